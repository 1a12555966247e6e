/// A kind of word whose truth depends on the image.
public enum GroundedCategory: String, CaseIterable, Sendable {
    case color, shape, shapePlural, size, row, column, digit, numberWord, yesNo, relation
}

/// Image-grounded negatives: a text with exactly one image-dependent word (a colour, shape, size,
/// row or column word, a count, yes/no, or a spatial relation) swapped for another word of the
/// same kind, so the negative reads as fluently as the original and only the image can tell them
/// apart. Preference pairs use it for their rejected answers; noisy captions for wrong attributes.
///
/// ```swift
/// var random = WorldRandom(seed: 7)
/// GroundedNegative.make(from: "The circle is red.", changing: "red", random: &random)  // "The circle is blue."
/// GroundedNegative.make(from: "top left", random: &random)                             // "bottom left"
/// ```
public enum GroundedNegative {
    static let wordsByCategory: [GroundedCategory: [String]] = [
        .color: ObjectColor.allCases.map(\.rawValue),
        .shape: ShapeKind.allCases.map(\.rawValue),
        .shapePlural: ShapeKind.allCases.map(\.plural),
        .size: ObjectSize.allCases.map(\.rawValue),
        .row: GridRow.allCases.map(\.word),
        .column: GridColumn.allCases.map(\.word),
        .digit: (0...4).map(String.init),
        .numberWord: Array(NumberWords.words[0...4]),
        .yesNo: ["yes", "no"],
        .relation: ["left", "right", "above", "below"],
    ]

    private static let categoryByWord: [String: GroundedCategory] = {
        var table: [String: GroundedCategory] = [:]
        for category in GroundedCategory.allCases where category != .relation {
            for word in wordsByCategory[category]! { table[word] = category }
        }
        table["above"] = .relation
        table["below"] = .relation
        for digit in 5...9 { table[String(digit)] = .digit }
        return table
    }()

    /// A word of the text: its range and its lower-cased spelling.
    public struct Word: Sendable {
        public var range: Range<String.Index>
        public var text: String
    }

    /// The words of `text`: maximal runs of ASCII letters and digits.
    public static func words(in text: String) -> [Word] {
        var words: [Word] = []
        var start: String.Index? = nil
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            let isWordCharacter = character.isASCII && (character.isLetter || character.isNumber)
            if isWordCharacter, start == nil { start = index }
            if !isWordCharacter, let s = start {
                words.append(Word(range: s..<index, text: text[s..<index].lowercased()))
                start = nil
            }
            index = text.index(after: index)
        }
        if let s = start { words.append(Word(range: s..<text.endIndex, text: text[s...].lowercased())) }
        return words
    }

    /// The category of word `k` of `words`, or nil when its truth does not depend on the image.
    /// "left" and "right" followed by "of" are relations; otherwise they are columns.
    public static func category(of k: Int, in words: [Word]) -> GroundedCategory? {
        let word = words[k].text
        if word == "left" || word == "right" {
            return k + 1 < words.count && words[k + 1].text == "of" ? .relation : .column
        }
        return categoryByWord[word]
    }

    /// `text` with one grounded word replaced by a different word of the same category (keeping an
    /// initial capital), or nil when no word qualifies.
    ///
    /// - Parameters:
    ///   - target: When given, only a word inside the last occurrence of `target` (matched by
    ///     words, ignoring case) may change — pass the answer, so the negative contradicts the
    ///     answer rather than the question's own description of the object.
    ///   - categories: When given, only words of these categories may change.
    public static func make(from text: String, changing target: String? = nil,
                            categories: Set<GroundedCategory>? = nil, random: inout WorldRandom) -> String? {
        let words = words(in: text)
        var allowed = Array(words.indices)
        if let target {
            let targetWords = Self.words(in: target).map(\.text)
            guard !targetWords.isEmpty, targetWords.count <= words.count else { return nil }
            let starts = (0...(words.count - targetWords.count)).filter { start in
                targetWords.indices.allSatisfy { words[start + $0].text == targetWords[$0] }
            }
            guard let start = starts.last else { return nil }
            allowed = Array(start..<(start + targetWords.count))
        }
        let candidates: [(Int, GroundedCategory)] = allowed.compactMap { k in
            guard let kind = Self.category(of: k, in: words), categories?.contains(kind) ?? true else { return nil }
            return (k, kind)
        }
        guard !candidates.isEmpty else { return nil }
        let (k, category) = random.pick(candidates)
        let original = words[k].text
        let replacement: String
        if category == .relation {
            replacement = ["left": "right", "right": "left", "above": "below", "below": "above"][original]!
        } else {
            replacement = random.pick(wordsByCategory[category]!.filter { $0 != original })
        }
        let spelled = text[words[k].range].first!.isUppercase ? Grammar.capitalized(replacement) : replacement
        var result = text
        result.replaceSubrange(words[k].range, with: spelled)
        return result
    }
}
