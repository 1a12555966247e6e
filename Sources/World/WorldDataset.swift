// The whole data set: scenes of both splits and every text product, built deterministically from
// a configuration.

/// What to generate.
public struct WorldConfiguration: Equatable, Sendable {
    /// Preset amounts of data.
    public enum Size: String, CaseIterable, Sendable {
        /// 48 + 16 scenes, and 16 encoder-only pictures: for tests and CI.
        case tiny
        /// 400 + 100 scenes, and 4000 encoder-only pictures: the main job's data.
        case small
        /// 4000 + 500 scenes, and 8000 encoder-only pictures.
        case `default`

        public var trainSceneCount: Int { [48, 400, 4000][Self.allCases.firstIndex(of: self)!] }
        public var heldoutSceneCount: Int { [16, 100, 500][Self.allCases.firstIndex(of: self)!] }
        public var encoderSceneCount: Int { [16, 4000, 8000][Self.allCases.firstIndex(of: self)!] }
    }

    public var seed: UInt64
    public var trainSceneCount: Int
    public var heldoutSceneCount: Int
    /// Pictures beside the training scenes for image-encoder pretraining (`regions.jsonl` lists
    /// them with the training scenes): Meta's image encoder was pretrained on far more images than
    /// the adapters saw, and on the training scenes alone a small world's encoder learns them by heart.
    public var encoderSceneCount: Int
    /// Image width and height in pixels (at least ``SceneGenerator/minimumImageSize``). 64 by
    /// default: the smallest side at which small shapes stay recognisable, and the model that reads
    /// them trains on two cores in minutes.
    public var imageSize: Int
    public var noise: NoiseShares
    /// Noisy alt-text pairs per training scene.
    public var noisyPairsPerScene: Int
    /// Evaluation questions per scene (distinct types while the scene has enough).
    public var questionsPerScene: Int
    /// The most objects a scene holds (1–4; each scene draws its count uniformly from 1 to this).
    /// 1 makes a world of single objects, where no question needs to tell objects apart.
    public var maxObjectsPerScene: Int
    /// How far objects wander inside their cell, as a share of the room the cell leaves (0...1;
    /// 0 centres every object in its cell).
    public var placementJitter: Double
    /// The question types of the world's questions, short-answer and conversation instructions and
    /// preference pairs (all by default; a subset makes a focused world, e.g. colour only).
    public var questionTypes: [QuestionType]

    public init(size: Size = .default, seed: UInt64 = 0, imageSize: Int = 64, noise: NoiseShares = NoiseShares(),
                noisyPairsPerScene: Int = 2, questionsPerScene: Int = 4) {
        self.seed = seed
        trainSceneCount = size.trainSceneCount
        heldoutSceneCount = size.heldoutSceneCount
        encoderSceneCount = size.encoderSceneCount
        self.imageSize = imageSize
        self.noise = noise
        self.noisyPairsPerScene = noisyPairsPerScene
        self.questionsPerScene = questionsPerScene
        maxObjectsPerScene = 4
        placementJitter = 1
        questionTypes = QuestionType.allCases
    }

    /// Checks the numbers; the error names the field.
    public func validate() throws {
        guard imageSize >= SceneGenerator.minimumImageSize, imageSize <= 4096 else {
            throw WorldError("image size \(imageSize) is outside \(SceneGenerator.minimumImageSize)...4096")
        }
        guard trainSceneCount >= 1, heldoutSceneCount >= 0, encoderSceneCount >= 0,
              trainSceneCount + heldoutSceneCount + encoderSceneCount <= 999_999 else {
            throw WorldError("scene counts \(trainSceneCount) (train), \(heldoutSceneCount) (held out) and \(encoderSceneCount) (encoder only) "
                             + "must be ≥ 1, ≥ 0 and ≥ 0, at most 999999 together")
        }
        guard (0...1).contains(placementJitter) else { throw WorldError("placement jitter \(placementJitter) is outside 0...1") }
        guard (1...4).contains(maxObjectsPerScene) else {
            throw WorldError("objects per scene \(maxObjectsPerScene) is outside 1...4 (the 3×3 grid holds at most 4 here)")
        }
        guard !questionTypes.isEmpty else { throw WorldError("question types: give at least one") }
        guard noisyPairsPerScene >= 0, questionsPerScene >= 0 else {
            throw WorldError("noisy pairs and questions per scene must not be negative")
        }
        let shares = [noise.unrelated, noise.wrongAttribute, noise.partial, noise.truncation, noise.boilerplate]
        guard shares.allSatisfy({ (0...1).contains($0) }) else { throw WorldError("noise shares must lie in 0...1") }
    }
}

/// A world error: a configuration that cannot be built or a folder that cannot be written.
public struct WorldError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// An image and a text about it (one line of `pretrain-*.jsonl`).
public struct CaptionPair: Equatable, Sendable {
    /// "000042-noisy-1".
    public var id: String
    public var sceneIndex: Int
    public var image: String
    public var text: String
}

/// A question about an image with its reference answer (one line of `qa-*.jsonl`).
public struct QuestionRecord: Equatable, Sendable {
    /// "000042-q0".
    public var id: String
    public var sceneIndex: Int
    public var image: String
    public var qa: QuestionAnswer
    /// The question as written to the file and shown to the model: ``QuestionAnswer/shortPrompt``.
    public var prompt: String { qa.shortPrompt }
}

/// A preference pair: one prompt about an image, the correct answer and an image-grounded negative.
public struct PreferencePair: Equatable, Sendable {
    /// "000042-pref-0".
    public var id: String
    public var sceneIndex: Int
    public var image: String
    public var type: QuestionType
    public var prompt: String
    public var chosen: String
    public var rejected: String
}

/// A text of the world's language for training the base language model and its tokenizer.
public enum CorpusDocument: Equatable, Sendable {
    /// Running text (a caption, a description).
    case text(String)
    /// A user/assistant exchange sequence, as a chat.
    case chat([Exchange])

    /// The document as plain text: chats as "User: …" / "Assistant: …" lines.
    public var plainText: String {
        switch self {
        case .text(let text): text
        case .chat(let exchanges): exchanges.map { "User: \($0.human)\nAssistant: \($0.assistant)" }.joined(separator: "\n")
        }
    }
}

/// The built-in image–text world: scenes and everything said about them.
///
/// ```swift
/// let world = try WorldDataset(configuration: WorldConfiguration(size: .tiny, seed: 1))
/// let image = SceneRenderer.render(world.scenes[0])
/// try WorldWriter.write(world, to: URL(fileURLWithPath: "data"), replacingExisting: false)
/// ```
///
/// Every product is deterministic in the seed, and each scene's products come from their own
/// random streams, so the same seed gives byte-identical files. Train and held-out scenes never
/// share a ``Scene/signature`` (the held-out split shows no arrangement seen in training).
public struct WorldDataset: Sendable {
    /// Bumped whenever the same seed would give different data.
    public static let generatorVersion = 2

    public let configuration: WorldConfiguration
    /// Train scenes first, then held-out ones; `scenes[k].index == k`.
    public let scenes: [Scene]
    public let noisyPairs: [CaptionPair]
    /// Exact captions and detailed descriptions, one of each per training scene.
    public let highQualityPairs: [CaptionPair]
    public let instructions: [InstructionSample]
    public let trainQuestions: [QuestionRecord]
    public let heldoutQuestions: [QuestionRecord]
    public let trainPreferences: [PreferencePair]
    public let heldoutPreferences: [PreferencePair]
    /// The world's language for the base model: captions, descriptions and chats of training scenes.
    public let corpus: [CorpusDocument]

    private enum Purpose: UInt64 {
        case scene = 1, noisy, exact, detailed, conversation, detail, reasoning, shortAnswer, questions, preferences
    }

    /// Builds everything the configuration asks for (images are rendered by ``SceneRenderer`` when
    /// written).
    /// - Throws: ``WorldError`` for an invalid configuration.
    public init(configuration: WorldConfiguration) throws {
        try configuration.validate()
        self.configuration = configuration
        let seed = configuration.seed
        func random(_ purpose: Purpose, _ index: Int) -> WorldRandom {
            WorldRandom.derived(seed: seed, purpose: purpose.rawValue, index: index)
        }

        var scenes: [Scene] = []
        var trainSignatures = Set<String>()
        for index in 0..<configuration.trainSceneCount {
            var r = random(.scene, index)
            let count = 1 + r.int(below: configuration.maxObjectsPerScene)
            let scene = SceneGenerator.scene(index: index, split: .train, imageSize: configuration.imageSize,
                                             objectCount: count, jitter: configuration.placementJitter, random: &r)
            trainSignatures.insert(scene.signature)
            scenes.append(scene)
        }
        for index in configuration.trainSceneCount..<(configuration.trainSceneCount + configuration.heldoutSceneCount) {
            var r = random(.scene, index)
            // The object count is drawn first and kept while redrawing the rest, so that excluding
            // arrangements seen in training does not thin out one-object scenes (of which there are
            // only 630); only if that fails is the count redrawn too.
            let count = 1 + r.int(below: configuration.maxObjectsPerScene)
            var scene: Scene
            var attempts = 0
            repeat {
                scene = SceneGenerator.scene(index: index, split: .heldout, imageSize: configuration.imageSize,
                                             objectCount: attempts < 500 || configuration.maxObjectsPerScene == 1 ? count : nil,
                                             jitter: configuration.placementJitter, random: &r)
                attempts += 1
            } while trainSignatures.contains(scene.signature) && attempts < 1000
            guard !trainSignatures.contains(scene.signature) else {
                throw WorldError("cannot find a held-out scene unlike every training scene; use fewer training scenes")
            }
            scenes.append(scene)
        }
        // Encoder-only pictures are drawn like training scenes, redrawn (a few times) when one
        // repeats a held-out arrangement, so that held-out pictures stay unseen.
        let heldoutSignatures = Set(scenes[configuration.trainSceneCount...].map(\.signature))
        let firstEncoderScene = configuration.trainSceneCount + configuration.heldoutSceneCount
        for index in firstEncoderScene..<(firstEncoderScene + configuration.encoderSceneCount) {
            var r = random(.scene, index)
            var scene: Scene
            var attempts = 0
            repeat {
                scene = SceneGenerator.scene(index: index, split: .encoder, imageSize: configuration.imageSize,
                                             objectCount: 1 + r.int(below: configuration.maxObjectsPerScene),
                                             jitter: configuration.placementJitter, random: &r)
                attempts += 1
            } while heldoutSignatures.contains(scene.signature) && attempts < 100
            if !heldoutSignatures.contains(scene.signature) { scenes.append(scene) }
        }
        self.scenes = scenes
        let train = scenes.filter { $0.split == .train }, heldout = scenes.filter { $0.split == .heldout }

        var noisy: [CaptionPair] = [], highQuality: [CaptionPair] = [], instructions: [InstructionSample] = []
        var corpus: [CorpusDocument] = []
        for scene in train {
            var r = random(.noisy, scene.index)
            var firstNoisy: String? = nil
            for k in 0..<configuration.noisyPairsPerScene {
                let other = train[r.int(below: train.count)]
                let text = Captions.noisy(scene, other: other, shares: configuration.noise, random: &r)
                noisy.append(CaptionPair(id: "\(scene.id)-noisy-\(k)", sceneIndex: scene.index, image: scene.imagePath, text: text))
                firstNoisy = firstNoisy ?? text
            }
            var re = random(.exact, scene.index), rd = random(.detailed, scene.index)
            let exact = Captions.exact(scene, random: &re), detailed = Captions.detailed(scene, random: &rd)
            highQuality.append(CaptionPair(id: "\(scene.id)-caption", sceneIndex: scene.index, image: scene.imagePath, text: exact))
            highQuality.append(CaptionPair(id: "\(scene.id)-detailed", sceneIndex: scene.index, image: scene.imagePath, text: detailed))

            var rc = random(.conversation, scene.index), rp = random(.detail, scene.index)
            var rr = random(.reasoning, scene.index), rs = random(.shortAnswer, scene.index)
            let samples: [(InstructionSample.Kind, [Exchange])] = [
                (.conversation, Instructions.conversation(scene, types: configuration.questionTypes, random: &rc)),
                (.detail, [Exchange(human: rp.pick(Instructions.detailPrompts), assistant: detailed)]),
                (.complexReasoning, [Instructions.complexReasoning(scene, random: &rr)]),
                (.shortAnswer, Instructions.shortAnswers(scene, types: configuration.questionTypes, random: &rs)),
            ]
            for (kind, exchanges) in samples where !exchanges.isEmpty {
                instructions.append(InstructionSample(id: "\(scene.id)-\(kind.rawValue)", sceneIndex: scene.index,
                                                      image: scene.imagePath, kind: kind, exchanges: exchanges))
            }
            corpus.append(.text(exact))
            corpus.append(.text(detailed))
            if let firstNoisy { corpus.append(.text(firstNoisy)) }
            for (_, exchanges) in samples where !exchanges.isEmpty { corpus.append(.chat(exchanges)) }
        }
        self.noisyPairs = noisy
        self.highQualityPairs = highQuality
        self.instructions = instructions
        self.corpus = corpus

        func questions(_ scenes: [Scene]) -> [QuestionRecord] {
            scenes.flatMap { scene -> [QuestionRecord] in
                var r = random(.questions, scene.index)
                let maker = QuestionMaker(scene: scene, types: configuration.questionTypes)
                let available = r.shuffled(maker.availableTypes)
                guard !available.isEmpty else { return [] }
                return (0..<configuration.questionsPerScene).compactMap { k in
                    maker.make(available[k % available.count], random: &r).map {
                        QuestionRecord(id: "\(scene.id)-q\(k)", sceneIndex: scene.index, image: scene.imagePath, qa: $0)
                    }
                }
            }
        }
        trainQuestions = questions(train)
        heldoutQuestions = questions(heldout)
        let types = configuration.questionTypes
        trainPreferences = train.flatMap { Self.preferences(for: $0, types: types, random: random(.preferences, $0.index)) }
        heldoutPreferences = heldout.flatMap { Self.preferences(for: $0, types: types, random: random(.preferences, $0.index)) }
    }

    /// Two pairs per scene: a short-answer one (any question type) and a sentence one (a question
    /// whose sentence states the answer); each rejected answer is the chosen one with one grounded
    /// word of the answer changed.
    private static func preferences(for scene: Scene, types: [QuestionType], random: WorldRandom) -> [PreferencePair] {
        var random = random
        let maker = QuestionMaker(scene: scene, types: types)
        var pairs: [PreferencePair] = []
        guard !maker.availableTypes.isEmpty else { return [] }
        if let qa = maker.make(random.pick(maker.availableTypes), random: &random),
           let rejected = GroundedNegative.make(from: qa.answer, changing: qa.answer, random: &random) {
            pairs.append(PreferencePair(id: "\(scene.id)-pref-0", sceneIndex: scene.index, image: scene.imagePath, type: qa.type,
                                        prompt: qa.shortPrompt, chosen: qa.answer, rejected: rejected))
        }
        let sentenceTypes = maker.availableTypes.filter { QuestionAnswer(type: $0, question: "", answer: "", sentence: "").sentenceStatesAnswer }
        if !sentenceTypes.isEmpty, let qa = maker.make(random.pick(sentenceTypes), random: &random),
           let rejected = GroundedNegative.make(from: qa.sentence, changing: qa.answer, random: &random) {
            pairs.append(PreferencePair(id: "\(scene.id)-pref-1", sceneIndex: scene.index, image: scene.imagePath, type: qa.type,
                                        prompt: qa.question, chosen: qa.sentence, rejected: rejected))
        }
        return pairs
    }

    /// The training scenes.
    public var trainScenes: ArraySlice<Scene> { scenes[0..<configuration.trainSceneCount] }
    /// The held-out scenes.
    public var heldoutScenes: ArraySlice<Scene> {
        scenes[configuration.trainSceneCount..<(configuration.trainSceneCount + configuration.heldoutSceneCount)]
    }
    /// The encoder-only pictures (fewer than asked for when some could only repeat a held-out arrangement).
    public var encoderScenes: ArraySlice<Scene> { scenes[(configuration.trainSceneCount + configuration.heldoutSceneCount)...] }

    /// The corpus as one text: documents separated by blank lines.
    public var corpusText: String { corpus.map(\.plainText).joined(separator: "\n\n") + "\n" }
}
