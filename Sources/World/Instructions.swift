// LLaVA's three kinds of instruction data — multi-turn conversations, detailed descriptions and
// complex reasoning — built from a scene's record, plus short-answer turns in the format of the
// evaluation questions.

/// One question and its answer in a conversation.
public struct Exchange: Equatable, Sendable {
    public var human: String
    public var assistant: String

    public init(human: String, assistant: String) {
        self.human = human
        self.assistant = assistant
    }
}

/// A supervised fine-tuning example about one image.
public struct InstructionSample: Equatable, Sendable {
    /// The kind of instruction data.
    public enum Kind: String, CaseIterable, Sendable {
        /// 2–3 questions answered in sentences.
        case conversation
        /// "Describe the image in detail." answered by the detailed description.
        case detail
        /// A question that needs a step of reasoning (conditions, comparisons, knowledge), answered
        /// with the reasoning.
        case complexReasoning = "complex_reasoning"
        /// 2–3 questions with ``QuestionAnswer/shortAnswerInstruction``, answered in a word or two.
        case shortAnswer = "short_answer"
    }

    /// "000042-conversation".
    public var id: String
    public var sceneIndex: Int
    /// The image's path relative to the data set's folder.
    public var image: String
    public var kind: Kind
    /// The exchanges in order; the image goes before the first question.
    public var exchanges: [Exchange]
}

enum Instructions {
    static let detailPrompts = [
        "Describe the image in detail.", "Give a detailed description of this picture.",
        "What is in this image? Describe it thoroughly.", "Explain what you see in the image in detail.",
    ]

    /// Two or three questions of different types, answered in sentences.
    static func conversation(_ scene: Scene, types: [QuestionType], random: inout WorldRandom) -> [Exchange] {
        let maker = QuestionMaker(scene: scene, types: types)
        let types = random.shuffled(maker.availableTypes).prefix(2 + random.int(below: 2))
        return types.compactMap { type in maker.make(type, random: &random) }.map { Exchange(human: $0.question, assistant: $0.sentence) }
    }

    /// Two or three questions of different types, answered with the short canonical answer.
    static func shortAnswers(_ scene: Scene, types: [QuestionType], random: inout WorldRandom) -> [Exchange] {
        let maker = QuestionMaker(scene: scene, types: types)
        let types = random.shuffled(maker.availableTypes).prefix(2 + random.int(below: 2))
        return types.compactMap { type in maker.make(type, random: &random) }.map { Exchange(human: $0.shortPrompt, assistant: $0.answer) }
    }

    /// A question whose answer takes a step of reasoning over the record, with that reasoning.
    static func complexReasoning(_ scene: Scene, random: inout WorldRandom) -> Exchange {
        let objects = scene.objects, n = objects.count
        let describer = SceneDescriber(scene: scene)
        let topRow = objects.map(\.position.row.rawValue).min()!
        let highest = objects.indices.filter { objects[$0].position.row.rawValue == topRow }
        let kinds = n >= 2 && highest.count == 1 ? 5 : 4
        switch random.int(below: kinds) {
        case 0:
            let color = random.pick(objects).color
            let k = objects.filter { $0.color == color }.count
            let c = color.rawValue
            return Exchange(human: "How many objects are not \(c)?",
                            assistant: "There \(Grammar.be(n)) \(Grammar.counted(n, "object", "objects")) in total and "
                                + "\(NumberWords.word(k)) of them \(Grammar.be(k)) \(c), so \(NumberWords.word(n - k)) "
                                + "\(Grammar.be(n - k)) not \(c). The answer is \(n - k).")
        case 1:
            let a = random.pick(objects).shape
            let b = random.pick(ShapeKind.allCases.filter { $0 != a })
            let ca = objects.filter { $0.shape == a }.count, cb = objects.filter { $0.shape == b }.count
            let comparison = ca > cb ? "more \(a.plural) than \(b.plural)" : ca < cb ? "fewer \(a.plural) than \(b.plural)"
                : "as many \(a.plural) as \(b.plural)"
            return Exchange(human: "Are there more \(a.plural) than \(b.plural)?",
                            assistant: "\(Grammar.capitalized(Grammar.counted(ca, a.rawValue, a.plural))) and "
                                + "\(Grammar.counted(cb, b.rawValue, b.plural)) can be seen, so there are \(comparison). "
                                + "The answer is \(ca > cb ? "yes" : "no").")
        case 2:
            let warm = objects.filter { $0.color.temperature == "warm" }
            let named = warm.isEmpty ? "None of the objects is warm"
                : Grammar.capitalized(Grammar.list(warm.map { "the \($0.nounPhrase)" })) + " \(warm.count == 1 ? "is" : "are") warm"
            return Exchange(human: "How many objects have a warm color?",
                            assistant: "Red, orange and yellow are warm colors. \(named), so the answer is \(warm.count).")
        case 3:
            let ref = describer.reference(to: random.int(below: n))!
            return Exchange(human: "If \(ref) were removed, how many objects would be left?",
                            assistant: "The image has \(Grammar.counted(n, "object", "objects")). Removing \(ref) "
                                + "leaves \(Grammar.counted(n - 1, "object", "objects")). The answer is \(n - 1).")
        default:
            let ref = describer.reference(to: highest[0])!
            return Exchange(human: "Which object is highest in the image?",
                            assistant: "\(Grammar.capitalized(ref)) is highest: it is in the \(GridRow(rawValue: topRow)!.word) row "
                                + "and every other object is lower.")
        }
    }
}
