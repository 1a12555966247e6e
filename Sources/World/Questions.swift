import Foundation

// Questions about a scene with reference answers read off its record.

/// What a question asks about.
public enum QuestionType: String, CaseIterable, Sendable {
    /// "What color is the circle?" → "red".
    case color
    /// "What shape is the red object?" → "circle".
    case shape
    /// "Is the red circle small or large?" → "large".
    case size
    /// "How many red objects are there?" → "2" (counting under a condition; 0 when none match).
    case count
    /// "Where is the red circle?" → "top left" (row then column, always two words).
    case position
    /// "Is the red circle to the left of the blue square?" → "yes" / "no" (by grid cells, strictly).
    case relation
    /// "Is there a red circle?" → "yes" / "no".
    case existence
}

/// A question with its reference answers.
public struct QuestionAnswer: Equatable, Sendable {
    /// Appended to a question when a short answer is wanted (as LLaVA-1.5 does for VQA data), so
    /// the model can tell "answer in a word" from "answer in a sentence".
    public static let shortAnswerInstruction = "Answer briefly."

    public var type: QuestionType
    /// The question alone: "What color is the circle?".
    public var question: String
    /// The short canonical answer, lower case, for exact match: a colour, shape or size word, a
    /// digit, "top left"…, "yes" or "no".
    public var answer: String
    /// The answer as a sentence: "The circle is red."; its last grounded words are `answer`
    /// except for yes/no questions.
    public var sentence: String

    public init(type: QuestionType, question: String, answer: String, sentence: String) {
        self.type = type
        self.question = question
        self.answer = answer
        self.sentence = sentence
    }

    /// The question followed by ``shortAnswerInstruction``: the prompt whose reply is `answer`.
    public var shortPrompt: String { question + " " + Self.shortAnswerInstruction }

    /// A model's reply in the form reference answers take, for exact match: lower case, spaces
    /// trimmed and collapsed, a final full stop dropped ("Top  left." → "top left").
    public static func normalized(_ reply: String) -> String {
        var words = reply.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        while words.hasSuffix(".") { words.removeLast() }
        return words.trimmingCharacters(in: .whitespaces)
    }

    /// Whether `reply`, normalized, is exactly the reference answer.
    public func isAnsweredBy(_ reply: String) -> Bool { Self.normalized(reply) == answer }

    /// Whether changing the answer's words inside `sentence` surely makes the sentence false
    /// (false for yes/no sentences, whose answer word is not the claim).
    public var sentenceStatesAnswer: Bool { type != .relation && type != .existence }
}

/// Makes questions about one scene.
struct QuestionMaker {
    let scene: Scene
    let describer: SceneDescriber

    /// The types the world asks about (``WorldConfiguration/questionTypes``).
    let types: [QuestionType]

    init(scene: Scene, types: [QuestionType] = QuestionType.allCases) {
        self.scene = scene
        self.types = types
        describer = SceneDescriber(scene: scene)
    }

    /// The world's types this scene can be asked about: relations need two objects, and "where"
    /// questions an object that can be named without its position (not so when all objects look alike).
    var availableTypes: [QuestionType] {
        QuestionType.allCases.filter { type in
            guard types.contains(type) else { return false }
            return switch type {
            case .relation: scene.objects.count >= 2
            case .position: scene.objects.indices.contains { describer.reference(to: $0, avoiding: .position) != nil }
            default: true
            }
        }
    }

    /// A question of `type`, or nil when the scene has none (only for types not in ``availableTypes``).
    func make(_ type: QuestionType, random: inout WorldRandom) -> QuestionAnswer? {
        let objects = scene.objects
        func referable(avoiding attribute: Attribute) -> (SceneObject, String)? {
            let choices = objects.indices.compactMap { k in describer.reference(to: k, avoiding: attribute).map { (objects[k], $0) } }
            return choices.isEmpty ? nil : random.pick(choices)
        }
        switch type {
        case .color:
            guard let (object, ref) = referable(avoiding: .color) else { return nil }
            let question = random.chance(0.5) ? "What color is \(ref)?" : "What is the color of \(ref)?"
            return QuestionAnswer(type: type, question: question, answer: object.color.rawValue,
                                  sentence: "\(Grammar.capitalized(ref)) is \(object.color.rawValue).")
        case .shape:
            guard let (object, ref) = referable(avoiding: .shape) else { return nil }
            let question = random.chance(0.5) ? "What shape is \(ref)?" : "Which shape is \(ref)?"
            return QuestionAnswer(type: type, question: question, answer: object.shape.rawValue,
                                  sentence: "\(Grammar.capitalized(ref)) is \(Grammar.article(object.shape.rawValue)) \(object.shape.rawValue).")
        case .size:
            guard let (object, ref) = referable(avoiding: .size) else { return nil }
            let question = random.chance(0.5) ? "Is \(ref) small or large?" : "What size is \(ref)?"
            return QuestionAnswer(type: type, question: question, answer: object.size.rawValue,
                                  sentence: "\(Grammar.capitalized(ref)) is \(object.size.rawValue).")
        case .position:
            guard let (object, ref) = referable(avoiding: .position) else { return nil }
            let question = random.chance(0.5) ? "Where is \(ref)?" : "In which part of the image is \(ref)?"
            return QuestionAnswer(type: type, question: question, answer: object.position.phrase,
                                  sentence: "\(Grammar.capitalized(ref)) is in the \(object.position.phrase).")
        case .count:
            return countQuestion(random: &random)
        case .existence:
            return existenceQuestion(random: &random)
        case .relation:
            return relationQuestion(random: &random)
        }
    }

    private func countQuestion(random: inout WorldRandom) -> QuestionAnswer {
        let objects = scene.objects
        // A colour or shape usually taken from the scene, sometimes from anywhere (so 0 occurs).
        let color = random.chance(0.75) ? random.pick(objects).color : random.pick(ObjectColor.allCases)
        let shape = random.chance(0.75) ? random.pick(objects).shape : random.pick(ShapeKind.allCases)
        let size = random.pick(ObjectSize.allCases)
        let noun: String, matches: Int
        switch random.int(below: 6) {
        case 0: (noun, matches) = ("objects", objects.count)
        case 1: (noun, matches) = ("\(color.rawValue) objects", objects.filter { $0.color == color }.count)
        case 2: (noun, matches) = (shape.plural, objects.filter { $0.shape == shape }.count)
        case 3: (noun, matches) = ("\(size.rawValue) objects", objects.filter { $0.size == size }.count)
        case 4: (noun, matches) = ("\(color.rawValue) \(shape.plural)", objects.filter { $0.color == color && $0.shape == shape }.count)
        default: (noun, matches) = ("\(size.rawValue) \(shape.plural)", objects.filter { $0.size == size && $0.shape == shape }.count)
        }
        let question = random.chance(0.5) ? "How many \(noun) are there?" : "How many \(noun) can you see?"
        return QuestionAnswer(type: .count, question: question, answer: String(matches),
                              sentence: "The number of \(noun) is \(matches).")
    }

    private func existenceQuestion(random: inout WorldRandom) -> QuestionAnswer {
        let objects = scene.objects
        typealias Description = (words: String, matches: (SceneObject) -> Bool)
        func describe(_ color: ObjectColor, _ shape: ShapeKind, _ size: ObjectSize, _ kind: Int) -> Description {
            switch kind {
            case 0: ("\(color.rawValue) \(shape.rawValue)", { $0.color == color && $0.shape == shape })
            case 1: ("\(size.rawValue) \(shape.rawValue)", { $0.size == size && $0.shape == shape })
            default: ("\(size.rawValue) \(color.rawValue) \(shape.rawValue)", { $0.size == size && $0.color == color && $0.shape == shape })
            }
        }
        let kind = random.int(below: 3)
        var description: Description
        if random.chance(0.5) {
            let object = random.pick(objects)
            description = describe(object.color, object.shape, object.size, kind)
        } else {
            // An absent combination: draw until one matches nothing (a scene has at most 4 objects).
            repeat {
                description = describe(random.pick(ObjectColor.allCases), random.pick(ShapeKind.allCases),
                                       random.pick(ObjectSize.allCases), kind)
            } while objects.contains(where: description.matches)
        }
        let present = objects.contains(where: description.matches)
        let article = Grammar.article(description.words)
        return QuestionAnswer(type: .existence, question: "Is there \(article) \(description.words)?", answer: present ? "yes" : "no",
                              sentence: present ? "Yes, there is \(article) \(description.words)." : "No, there is no \(description.words).")
    }

    private func relationQuestion(random: inout WorldRandom) -> QuestionAnswer? {
        let objects = scene.objects
        guard objects.count >= 2 else { return nil }
        var triples: [(Int, Int, SpatialRelation)] = []
        for a in objects.indices { for b in objects.indices where a != b { for r in SpatialRelation.allCases { triples.append((a, b, r)) } } }
        let wantTrue = random.chance(0.5)
        let matching = triples.filter { objects[$0.0].position != objects[$0.1].position && $0.2.holds(objects[$0.0], objects[$0.1]) == wantTrue }
        let (a, b, relation) = random.pick(matching.isEmpty ? triples : matching)
        let truth = relation.holds(objects[a], objects[b])
        let refA = describer.reference(to: a)!, refB = describer.reference(to: b)!
        let claim = "\(refA) is\(truth ? "" : " not") \(relation.phrase) \(refB)"
        return QuestionAnswer(type: .relation, question: "Is \(refA) \(relation.phrase) \(refB)?", answer: truth ? "yes" : "no",
                              sentence: (truth ? "Yes, " : "No, ") + claim + ".")
    }
}
