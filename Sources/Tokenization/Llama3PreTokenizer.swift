/// Splits UTF-8 text into the pieces the Llama 3 pre-tokenizer regex matches, by hand:
///
///     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
///     |\s*[\r\n]+|\s+(?!\S)|\s+
///
/// Classes follow the regex engines Hugging Face `tokenizers` (Oniguruma) and tiktoken (fancy-regex)
/// use: `\p{L}` is general category L*, `\p{N}` is N*, `\s` is the Unicode White_Space property (so
/// U+0085, U+00A0, U+2028 and U+3000 are spaces; U+001C…U+001F, U+180E and U+200B are not), and the
/// case-insensitive contractions also accept U+017F LATIN SMALL LETTER LONG S as `s`, as both
/// engines' case folding does. Every alternative is decided from at most two scalars of lookahead
/// plus the run that follows, which is what makes a scanner faster than a backtracking regex here.
struct Llama3PreTokenizer {
    /// The pattern, as `tokenizer.json` spells it, that this scanner implements.
    static let pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Calls `body` with the byte range of each piece of `text`, in order; the ranges tile `text`.
    @inline(__always)
    static func forEachPiece(in text: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>) -> Void) {
        var start = 0
        while start < text.count {
            let end = pieceEnd(text, from: start)
            body(start..<end)
            start = end
        }
    }

    // MARK: - Scalar classes

    enum Class: UInt8 { case letter, number, space, lineBreak, other }

    /// Classes of the Basic Multilingual Plane, computed once: the stdlib's property lookups are the
    /// slowest part of scanning otherwise. Scalars above U+FFFF (emoji, rare CJK) are classified
    /// directly.
    private static let planeZeroClasses: [Class] = (0..<0x10000).map { value in
        if value == 0x0A || value == 0x0D { return .lineBreak }
        guard let scalar = Unicode.Scalar(UInt32(value)) else { return .other }  // surrogates
        return classify(scalar)
    }

    private static func classify(_ scalar: Unicode.Scalar) -> Class {
        let properties = scalar.properties
        if properties.isWhitespace { return .space }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// The class of the scalar at `i` and the index just past it. `text` is valid UTF-8.
    @inline(__always)
    private static func scalar(_ text: UnsafeBufferPointer<UInt8>, at i: Int) -> (Class, Int) {
        let lead = text[i]
        if lead < 0x80 { return (planeZeroClasses[Int(lead)], i + 1) }
        var value: UInt32
        let length: Int
        if lead < 0xE0 {
            value = UInt32(lead & 0x1F); length = 2
        } else if lead < 0xF0 {
            value = UInt32(lead & 0x0F); length = 3
        } else {
            value = UInt32(lead & 0x07); length = 4
        }
        for k in 1..<length { value = value << 6 | UInt32(text[i + k] & 0x3F) }
        if value < 0x10000 { return (planeZeroClasses[Int(value)], i + length) }
        return (classify(Unicode.Scalar(value) ?? "\u{FFFD}"), i + length)
    }

    @inline(__always)
    private static func isSpace(_ c: Class) -> Bool { c == .space || c == .lineBreak }

    /// The end of the run of `wanted`-class scalars starting at `i`.
    @inline(__always)
    private static func runEnd(_ text: UnsafeBufferPointer<UInt8>, from i: Int, of wanted: Class) -> Int {
        var j = i
        while j < text.count {
            let (c, next) = scalar(text, at: j)
            if c != wanted { break }
            j = next
        }
        return j
    }

    @inline(__always)
    private static func lineBreaksEnd(_ text: UnsafeBufferPointer<UInt8>, from i: Int) -> Int {
        var j = i
        while j < text.count, text[j] == 0x0A || text[j] == 0x0D { j += 1 }
        return j
    }

    // MARK: - The alternatives, in the regex's order

    private static func pieceEnd(_ text: UnsafeBufferPointer<UInt8>, from i: Int) -> Int {
        if text[i] == UInt8(ascii: "'"), let end = contractionEnd(text, from: i) { return end }
        let (first, afterFirst) = scalar(text, at: i)
        switch first {
        case .letter:
            return runEnd(text, from: afterFirst, of: .letter)
        case .number:
            // \p{N}{1,3}
            var j = afterFirst
            for _ in 0..<2 where j < text.count {
                let (c, next) = scalar(text, at: j)
                if c != .number { break }
                j = next
            }
            return j
        case .other, .space:
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if afterFirst < text.count, scalar(text, at: afterFirst).0 == .letter {
                return runEnd(text, from: afterFirst, of: .letter)
            }
            if first == .other {
                //  ?[^\s\p{L}\p{N}]+[\r\n]*  without the optional space
                return lineBreaksEnd(text, from: runEnd(text, from: afterFirst, of: .other))
            }
            if text[i] == 0x20, afterFirst < text.count, scalar(text, at: afterFirst).0 == .other {
                return lineBreaksEnd(text, from: runEnd(text, from: afterFirst, of: .other))
            }
            return whitespaceEnd(text, from: i)
        case .lineBreak:
            return whitespaceEnd(text, from: i)
        }
    }

    /// `\s*[\r\n]+|\s+(?!\S)|\s+` at a whitespace scalar.
    @inline(__always)
    private static func whitespaceEnd(_ text: UnsafeBufferPointer<UInt8>, from i: Int) -> Int {
        var j = i, lastLineBreakEnd = -1, lastStart = i, scalars = 0
        while j < text.count {
            let (c, next) = scalar(text, at: j)
            guard isSpace(c) else { break }
            if c == .lineBreak { lastLineBreakEnd = next }
            lastStart = j
            scalars += 1
            j = next
        }
        // \s*[\r\n]+ : the greedy \s* gives back scalars until the last line break ends the match.
        if lastLineBreakEnd >= 0 { return lastLineBreakEnd }
        // \s+(?!\S) : at the end of the text, or leaving the last space for the word that follows.
        if j == text.count || scalars == 1 { return j }
        return lastStart
    }

    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at an apostrophe, or nil.
    @inline(__always)
    private static func contractionEnd(_ text: UnsafeBufferPointer<UInt8>, from i: Int) -> Int? {
        let n = text.count
        guard i + 1 < n else { return nil }
        @inline(__always) func lower(_ k: Int) -> UInt8 { k < n ? text[k] | 0x20 : 0 }
        switch lower(i + 1) {
        case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"):
            return text[i + 1] < 0x80 ? i + 2 : nil
        case UInt8(ascii: "r"), UInt8(ascii: "v"):
            return text[i + 1] < 0x80 && lower(i + 2) == UInt8(ascii: "e") && text[i + 2] < 0x80 ? i + 3 : nil
        case UInt8(ascii: "l"):
            return text[i + 1] < 0x80 && lower(i + 2) == UInt8(ascii: "l") && text[i + 2] < 0x80 ? i + 3 : nil
        default:
            // U+017F (long s) is C5 BF in UTF-8 and case-folds to "s".
            return text[i + 1] == 0xC5 && i + 2 < n && text[i + 2] == 0xBF ? i + 3 : nil
        }
    }
}
