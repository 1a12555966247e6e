import World

/// Answers the world's questions from a scene's record by parsing the question text, without any
/// of the generator's code: the check that reference answers mean what the questions say.
enum IndependentSolver {
    static func answer(_ question: String, type: QuestionType, in scene: Scene) -> String? {
        func after(_ prefixes: [String], before suffixes: [String]) -> String? {
            for prefix in prefixes where question.hasPrefix(prefix) {
                for suffix in suffixes where question.hasSuffix(suffix) && question.count >= prefix.count + suffix.count {
                    return String(question.dropFirst(prefix.count).dropLast(suffix.count))
                }
            }
            return nil
        }
        switch type {
        case .color:
            guard let ref = after(["What color is ", "What is the color of "], before: ["?"]), let object = resolve(ref, in: scene) else { return nil }
            return object.color.rawValue
        case .shape:
            guard let ref = after(["What shape is ", "Which shape is "], before: ["?"]), let object = resolve(ref, in: scene) else { return nil }
            return object.shape.rawValue
        case .size:
            guard let ref = after(["Is ", "What size is "], before: [" small or large?", "?"]), let object = resolve(ref, in: scene) else { return nil }
            return object.size.rawValue
        case .position:
            guard let ref = after(["Where is ", "In which part of the image is "], before: ["?"]), let object = resolve(ref, in: scene) else { return nil }
            return ["top", "middle", "bottom"][object.position.row.rawValue] + " " + ["left", "center", "right"][object.position.column.rawValue]
        case .count:
            guard let noun = after(["How many "], before: [" are there?", " can you see?"]) else { return nil }
            return String(scene.objects.filter { matches($0, words: noun.split(separator: " ").map(String.init)) }.count)
        case .existence:
            guard let description = after(["Is there a ", "Is there an "], before: ["?"]) else { return nil }
            return scene.objects.contains { matches($0, words: description.split(separator: " ").map(String.init)) } ? "yes" : "no"
        case .relation:
            guard let body = after(["Is "], before: ["?"]) else { return nil }
            for relation in [" to the left of ", " to the right of ", " above ", " below "] {
                guard let range = body.range(of: relation),
                      let a = resolve(String(body[..<range.lowerBound]), in: scene),
                      let b = resolve(String(body[range.upperBound...]), in: scene) else { continue }
                let (ar, ac, br, bc) = (a.position.row.rawValue, a.position.column.rawValue, b.position.row.rawValue, b.position.column.rawValue)
                let holds = switch relation {
                case " to the left of ": ac < bc
                case " to the right of ": ac > bc
                case " above ": ar < br
                default: ar > br
                }
                return holds ? "yes" : "no"
            }
            return nil
        }
    }

    /// The one object a phrase like "the large red circle in the top left" names, or nil.
    static func resolve(_ phrase: String, in scene: Scene) -> SceneObject? {
        guard phrase.hasPrefix("the ") else { return nil }
        var words = phrase.dropFirst(4).split(separator: " ").map(String.init)
        var row: Int? = nil, column: Int? = nil
        if let k = words.firstIndex(of: "in"), words.count == k + 4, words[k + 1] == "the" {
            row = ["top", "middle", "bottom"].firstIndex(of: words[k + 2])
            column = ["left", "center", "right"].firstIndex(of: words[k + 3])
            guard row != nil, column != nil else { return nil }
            words = Array(words[..<k])
        }
        let found = scene.objects.filter {
            matches($0, words: words) && (row == nil || ($0.position.row.rawValue == row && $0.position.column.rawValue == column))
        }
        return found.count == 1 ? found[0] : nil
    }

    /// Whether an object fits descriptor words such as ["small", "red", "circles"] or ["objects"].
    static func matches(_ object: SceneObject, words: [String]) -> Bool {
        words.allSatisfy { word in
            if word == "object" || word == "objects" { return true }
            if let color = ObjectColor(rawValue: word) { return object.color == color }
            if let size = ObjectSize(rawValue: word) { return object.size == size }
            if let shape = ShapeKind.allCases.first(where: { $0.rawValue == word || $0.plural == word }) { return object.shape == shape }
            return false
        }
    }
}
