// Captions of a scene at three levels of quality: exact captions, detailed "knowledge-augmented"
// descriptions (both for the high-quality stage), and noisy web-style alt-text (for noisy-pair
// pretraining).

/// How often each kind of corruption hits a noisy alt-text caption (each is drawn independently).
public struct NoiseShares: Equatable, Sendable {
    /// Share whose text describes another scene entirely.
    public var unrelated: Double
    /// Share with one colour, shape or size word wrong.
    public var wrongAttribute: Double
    /// Share that names only some of the objects.
    public var partial: Double
    /// Share cut off after a few words.
    public var truncation: Double
    /// Share with web boilerplate ("stock photo", "royalty-free vector") around the text.
    public var boilerplate: Double

    public init(unrelated: Double = 0.1, wrongAttribute: Double = 0.2, partial: Double = 0.25,
                truncation: Double = 0.15, boilerplate: Double = 0.35) {
        self.unrelated = unrelated
        self.wrongAttribute = wrongAttribute
        self.partial = partial
        self.truncation = truncation
        self.boilerplate = boilerplate
    }
}

enum Captions {
    /// One sentence naming every object with its size, colour, shape and position.
    static func exact(_ scene: Scene, random: inout WorldRandom) -> String {
        let list = Grammar.list(scene.objects.map(SceneDescriber.fullPhrase))
        let n = scene.objects.count
        switch random.int(below: 4) {
        case 0: return Grammar.capitalized(list) + "."
        case 1: return "There \(Grammar.be(n)) \(Grammar.counted(n, "object", "objects")): \(list)."
        case 2: return "A picture of \(list)."
        default: return "The image shows \(list)."
        }
    }

    /// A paragraph: the count, each object with a fact about its shape or colour, the relations
    /// between neighbours, and a summary.
    static func detailed(_ scene: Scene, random: inout WorldRandom) -> String {
        let describer = SceneDescriber(scene: scene)
        let objects = scene.objects, n = objects.count
        var sentences = ["The image shows \(Grammar.counted(n, "object", "objects")) on a gray background."]
        for object in objects {
            var sentence = "In the \(object.position.phrase) there is \(Grammar.article(object.size.rawValue)) \(object.nounPhrase)."
            if random.chance(0.5) {
                let corners = object.shape.cornerCount
                sentence += corners == 0
                    ? " \(Grammar.capitalized(Grammar.article(object.shape.rawValue))) \(object.shape.rawValue) has no corners."
                    : " \(Grammar.capitalized(Grammar.article(object.shape.rawValue))) \(object.shape.rawValue) has \(NumberWords.word(corners)) corners."
            } else {
                sentence += " \(Grammar.capitalized(object.color.rawValue)) is \(Grammar.article(object.color.temperature)) \(object.color.temperature) color."
            }
            sentences.append(sentence)
        }
        if n >= 2 {
            for k in 0..<min(2, n - 1) {
                let a = objects[k], b = objects[k + 1]
                let relation = SceneDescriber.relation(of: a, to: b)
                let refA = describer.reference(to: k) ?? "the first object", refB = describer.reference(to: k + 1) ?? "the next object"
                sentences.append("\(Grammar.capitalized(refA)) is \(relation.phrase) \(refB).")
            }
            let large = objects.filter { $0.size == .large }.count
            let warm = objects.filter { $0.color.temperature == "warm" }.count
            if random.chance(0.5) {
                sentences.append("\(Grammar.capitalized(Grammar.counted(large, "object", "objects"))) \(Grammar.be(large)) large and "
                                 + "\(Grammar.counted(n - large, "object", "objects")) \(Grammar.be(n - large)) small.")
            } else {
                sentences.append("\(Grammar.capitalized(Grammar.counted(warm, "object has", "objects have"))) a warm color.")
            }
        }
        return sentences.joined(separator: " ")
    }

    private static let prefixes = ["stock photo: ", "image may contain: ", "free vector: ", "clipart of ", "photo of ", "IMG_2041 "]
    private static let suffixes = [" - stock illustration", " | royalty-free vector", " stock photo", " #shapes #art",
                                   " (click to enlarge)", " - free download", " on gray background", " wallpaper hd"]

    /// Web-style alt-text: short, lower-case, often wrong or padded. `other` is another scene for
    /// the unrelated share.
    static func noisy(_ scene: Scene, other: Scene, shares: NoiseShares, random: inout WorldRandom) -> String {
        let source = random.chance(shares.unrelated) ? other : scene
        var objects = source.objects
        if objects.count > 1 && random.chance(shares.partial) {
            objects = Array(random.shuffled(objects).prefix(1 + random.int(below: objects.count - 1)))
        }
        var text: String
        switch random.int(below: 4) {
        case 0: text = Grammar.list(objects.map { "\($0.color.rawValue) \($0.shape.rawValue)" })
        case 1: text = objects.map(\.nounPhrase).joined(separator: ", ")
        case 2: text = "geometric shapes " + objects.map { "\($0.color.rawValue) \($0.shape.rawValue)" }.joined(separator: " ")
        default: text = Grammar.list(objects.map(SceneDescriber.fullPhrase))
        }
        if random.chance(shares.wrongAttribute),
           let wrong = GroundedNegative.make(from: text, categories: [.color, .shape, .size], random: &random) {
            text = wrong
        }
        if random.chance(shares.truncation) {
            let words = text.split(separator: " ")
            if words.count > 2 { text = words.prefix(1 + random.int(below: words.count - 1)).joined(separator: " ") }
        }
        if random.chance(shares.boilerplate) {
            text = random.chance(0.5) ? random.pick(prefixes) + text : text + random.pick(suffixes)
        }
        return text
    }
}
