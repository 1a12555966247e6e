// Phrases about a scene's objects: referring expressions that pick out exactly one object, lists,
// and the small grammar helpers the captions, questions and instructions share.

/// An attribute a phrase may name.
enum Attribute: Sendable { case shape, color, size, position }

/// Builds phrases about one scene.
struct SceneDescriber {
    let scene: Scene

    /// Attribute subsets tried, shortest first, to name an object.
    private static let descriptorOrder: [[Attribute]] = [
        [], [.shape], [.color], [.size], [.color, .shape], [.size, .shape], [.size, .color], [.size, .color, .shape],
    ]

    /// The shortest phrase ("the red circle", "the small object", "the circle in the top left") that
    /// names `object` and no other object of the scene, without naming `avoided` (so a question
    /// about colour does not give the colour away); nil when there is none.
    func reference(to index: Int, avoiding avoided: Attribute? = nil) -> String? {
        let object = scene.objects[index]
        for descriptor in Self.descriptorOrder where avoided.map({ !descriptor.contains($0) }) ?? true {
            let matches = scene.objects.filter { other in
                descriptor.allSatisfy { attribute in
                    switch attribute {
                    case .shape: other.shape == object.shape
                    case .color: other.color == object.color
                    case .size: other.size == object.size
                    case .position: other.position == object.position
                    }
                }
            }
            if matches.count == 1 { return "the " + Self.words(object, descriptor) }
        }
        guard avoided != .position else { return nil }
        let descriptor: [Attribute] = [.size, .color, .shape].filter { $0 != avoided }
        return "the \(Self.words(object, descriptor)) in the \(object.position.phrase)"
    }

    /// "large red circle", "red object".
    static func words(_ object: SceneObject, _ descriptor: [Attribute]) -> String {
        var words: [String] = []
        if descriptor.contains(.size) { words.append(object.size.rawValue) }
        if descriptor.contains(.color) { words.append(object.color.rawValue) }
        words.append(descriptor.contains(.shape) ? object.shape.rawValue : "object")
        return words.joined(separator: " ")
    }

    /// "a large red circle in the top left".
    static func fullPhrase(_ object: SceneObject) -> String {
        "a \(object.nounPhrase) in the \(object.position.phrase)"
    }

    /// The relation that holds between two objects, read off the grid: a vertical one when their
    /// rows differ, else a horizontal one.
    static func relation(of a: SceneObject, to b: SceneObject) -> SpatialRelation {
        if a.position.row != b.position.row { return a.position.row.rawValue < b.position.row.rawValue ? .above : .below }
        return a.position.column.rawValue < b.position.column.rawValue ? .leftOf : .rightOf
    }
}

/// A spatial relation between two objects, decided by their grid cells (strictly: objects in the
/// same column are neither left nor right of each other).
enum SpatialRelation: CaseIterable, Sendable {
    case leftOf, rightOf, above, below

    var phrase: String {
        switch self {
        case .leftOf: "to the left of"
        case .rightOf: "to the right of"
        case .above: "above"
        case .below: "below"
        }
    }

    func holds(_ a: SceneObject, _ b: SceneObject) -> Bool {
        switch self {
        case .leftOf: a.position.column.rawValue < b.position.column.rawValue
        case .rightOf: a.position.column.rawValue > b.position.column.rawValue
        case .above: a.position.row.rawValue < b.position.row.rawValue
        case .below: a.position.row.rawValue > b.position.row.rawValue
        }
    }
}

// MARK: - Grammar

enum Grammar {
    /// "a, b and c".
    static func list(_ items: [String]) -> String {
        switch items.count {
        case 0: ""
        case 1: items[0]
        default: items.dropLast().joined(separator: ", ") + " and " + items.last!
        }
    }

    /// The text with its first letter upper-cased.
    static func capitalized(_ text: String) -> String {
        guard let first = text.first else { return text }
        return first.uppercased() + text.dropFirst()
    }

    /// "a" or "an" before `word`.
    static func article(_ word: String) -> String {
        guard let first = word.first else { return "a" }
        return "aeiou".contains(first) ? "an" : "a"
    }

    /// "one circle", "three circles", "no circles".
    static func counted(_ n: Int, _ singular: String, _ plural: String) -> String {
        n == 0 ? "no \(plural)" : n == 1 ? "one \(singular)" : "\(NumberWords.word(n)) \(plural)"
    }

    /// "is" or "are" for a count.
    static func be(_ n: Int) -> String { n == 1 ? "is" : "are" }
}
