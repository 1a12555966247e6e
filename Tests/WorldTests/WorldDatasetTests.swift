import Foundation
import Media
import Testing
@testable import World

@Suite("The built-in world's data set")
struct WorldDatasetTests {
    static let small = try! WorldDataset(configuration: WorldConfiguration(size: .small, seed: 11))

    @Test("the same seed gives byte-identical files and another seed different ones")
    func determinism() throws {
        let a = try WorldDataset(configuration: WorldConfiguration(size: .tiny, seed: 3)).files()
        let b = try WorldDataset(configuration: WorldConfiguration(size: .tiny, seed: 3)).files()
        let c = try WorldDataset(configuration: WorldConfiguration(size: .tiny, seed: 4)).files()
        #expect(a.map(\.path) == b.map(\.path))
        #expect(a.map(\.contents) == b.map(\.contents))
        #expect(a.map(\.path) == c.map(\.path))
        let differing = zip(a, c).filter { $0.contents != $1.contents }.map(\.0.path)
        #expect(differing.contains("world.json") && differing.contains("qa-heldout.jsonl") && differing.contains("images/000000.png"),
                "\(differing.prefix(5))")
    }

    @Test("a world of chosen question types asks only those, in questions and preference pairs, and records them")
    func chosenQuestionTypes() throws {
        var configuration = WorldConfiguration(size: .tiny, seed: 5)
        configuration.questionTypes = [.color, .size]
        let world = try WorldDataset(configuration: configuration)
        let asked = Set((world.trainQuestions + world.heldoutQuestions).map(\.qa.type))
        #expect(asked == [.color, .size])
        #expect(Set((world.trainPreferences + world.heldoutPreferences).map(\.type)).isSubset(of: [.color, .size]))
        #expect(!world.trainPreferences.isEmpty)
        let record = try #require(world.files().first { $0.path == WorldDataset.FileName.record })
        #expect(String(decoding: record.contents, as: UTF8.self).contains("\"question_types\": [\"color\", \"size\"]"))
        // The default world asks every type.
        #expect(Set(Self.small.trainQuestions.map(\.qa.type)) == Set(QuestionType.allCases))
        configuration.questionTypes = []
        #expect(throws: WorldError.self) { try WorldDataset(configuration: configuration) }
    }

    @Test("every box lies inside the image and no two boxes of a scene overlap, at several image sizes",
          arguments: [24, 33, 64, 100])
    func boxesInsideAndDisjoint(imageSize: Int) throws {
        var configuration = WorldConfiguration(size: .small, seed: 5, imageSize: imageSize)
        configuration.questionsPerScene = 0
        let world = try WorldDataset(configuration: configuration)
        for scene in world.scenes {
            #expect((1...4).contains(scene.objects.count))
            #expect(Set(scene.objects.map(\.position)).count == scene.objects.count, "two objects share a cell in \(scene.id)")
            for (k, object) in scene.objects.enumerated() {
                let box = object.box
                #expect(box.x0 >= 0 && box.y0 >= 0 && box.x1 <= imageSize && box.y1 <= imageSize && box.x0 < box.x1 && box.y0 < box.y1,
                        "\(scene.id) object \(k): \(box)")
                // The box holds the shape's whole square, and the centre lies in the object's grid cell.
                #expect(Double(box.x0) <= object.centerX - object.extent && object.centerX + object.extent <= Double(box.x1))
                #expect(Double(box.y0) <= object.centerY - object.extent && object.centerY + object.extent <= Double(box.y1))
                let cell = Double(imageSize) / 3
                #expect(Int(object.centerX / cell) == object.position.column.rawValue && Int(object.centerY / cell) == object.position.row.rawValue)
                for other in scene.objects[(k + 1)...] {
                    #expect(!box.intersects(other.box), "\(scene.id): \(box) overlaps \(other.box)")
                }
            }
        }
    }

    @Test("a rendered object's centre pixel has exactly its recorded colour, and pixels outside every box are background")
    func renderedColours() throws {
        for scene in Self.small.scenes.prefix(120) {
            let image = SceneRenderer.render(scene)
            #expect(image.width == scene.imageSize && image.height == scene.imageSize && image.layout == .rgb)
            for object in scene.objects {
                let (x, y) = object.centerPixel
                #expect(Array(image[x, y]) == object.color.rgb, "\(scene.id) \(object.nounPhrase) at (\(x), \(y))")
            }
            for y in [0, scene.imageSize - 1] {
                for x in 0..<scene.imageSize where !scene.objects.contains(where: { $0.box.x0 <= x && x < $0.box.x1 && $0.box.y0 <= y && y < $0.box.y1 }) {
                    let expected = y == 0 ? scene.backgroundTop : scene.backgroundBottom
                    #expect(Array(image[x, y]) == expected)
                }
            }
        }
    }

    @Test("edges are anti-aliased: a circle's box has pixels strictly between its colour and the background")
    func antiAliasing() {
        let scene = Self.small.scenes.first { $0.objects.contains { $0.shape == .circle && $0.size == .large } }!
        let circle = scene.objects.first { $0.shape == .circle && $0.size == .large }!
        let image = SceneRenderer.render(scene)
        var blended = 0
        for y in circle.box.y0..<circle.box.y1 {
            for x in circle.box.x0..<circle.box.x1 {
                let value = Array(image[x, y])
                let t = Double(y) / Double(scene.imageSize - 1)
                let background = (0..<3).map { UInt8((Double(scene.backgroundTop[$0]) * (1 - t) + Double(scene.backgroundBottom[$0]) * t).rounded()) }
                if value != circle.color.rgb && value != background { blended += 1 }
            }
        }
        #expect(blended >= 8, "\(blended) partly covered pixels")
    }

    @Test("the PNG files decode to the rendered images")
    func pngRoundTrip() throws {
        let world = try WorldDataset(configuration: WorldConfiguration(size: .tiny, seed: 2))
        let files = try world.files()
        for scene in world.scenes.prefix(8) {
            let png = try #require(files.first { $0.path == scene.imagePath })
            let decoded = try decodeImage(data: png.contents, source: scene.imagePath)
            #expect(decoded.pixels == SceneRenderer.render(scene).pixels)
        }
    }

    @Test("every reference answer agrees with an independent reading of its question against the record")
    func answersMatchRecords() throws {
        let world = Self.small
        var checked: [QuestionType: Int] = [:]
        for record in world.trainQuestions + world.heldoutQuestions {
            let scene = world.scenes[record.sceneIndex]
            #expect(record.prompt.hasSuffix(" " + QuestionAnswer.shortAnswerInstruction))
            let expected = try #require(IndependentSolver.answer(record.qa.question, type: record.qa.type, in: scene),
                                        "cannot read \"\(record.qa.question)\" for \(scene.signature)")
            #expect(expected == record.qa.answer, "\(record.id): \"\(record.qa.question)\" in \(scene.signature)")
            checked[record.qa.type, default: 0] += 1
        }
        for type in QuestionType.allCases { #expect(checked[type, default: 0] >= 40, "\(type): \(checked[type, default: 0])") }
        // Count answers take several values, including 0.
        let counts = Set(world.trainQuestions.filter { $0.qa.type == .count }.map(\.qa.answer))
        #expect(counts.isSuperset(of: ["0", "1", "2", "3"]))
        let yesNo = world.trainQuestions.filter { $0.qa.type == .relation || $0.qa.type == .existence }
        let yesShare = Double(yesNo.filter { $0.qa.answer == "yes" }.count) / Double(yesNo.count)
        #expect(yesShare > 0.35 && yesShare < 0.65, "yes share \(yesShare)")
    }

    @Test("sentence answers end with the short answer, or start with it for yes/no questions")
    func sentencesCarryTheAnswer() throws {
        for scene in Self.small.scenes.prefix(200) {
            var random = WorldRandom(seed: UInt64(scene.index))
            let maker = QuestionMaker(scene: scene)
            for type in maker.availableTypes {
                let qa = try #require(maker.make(type, random: &random))
                let answerWords = GroundedNegative.words(in: qa.answer).map(\.text)
                if qa.sentenceStatesAnswer {
                    #expect(GroundedNegative.words(in: qa.sentence).suffix(answerWords.count).map(\.text) == answerWords,
                            "\(qa.sentence) / \(qa.answer)")
                } else {
                    #expect(qa.sentence.lowercased().hasPrefix(qa.answer + ","), "\(qa.sentence) / \(qa.answer)")
                }
            }
        }
    }

    @Test("every rejected answer differs from the chosen one in exactly one grounded word of the same kind")
    func negativesDifferInOneGroundedWord() throws {
        let world = Self.small
        let pairs = world.trainPreferences + world.heldoutPreferences
        #expect(pairs.count == 2 * (world.trainScenes.count + world.heldoutScenes.count), "every scene has a short and a sentence pair")
        for pair in pairs {
            let chosen = GroundedNegative.words(in: pair.chosen), rejected = GroundedNegative.words(in: pair.rejected)
            #expect(chosen.count == rejected.count, "\(pair.chosen) / \(pair.rejected)")
            guard chosen.count == rejected.count else { continue }
            let differing = chosen.indices.filter { chosen[$0].text != rejected[$0].text }
            #expect(differing.count == 1, "\(pair.chosen) / \(pair.rejected)")
            if let k = differing.first {
                let kind = GroundedNegative.category(of: k, in: chosen)
                #expect(kind != nil && kind == GroundedNegative.category(of: k, in: rejected), "\(pair.chosen) / \(pair.rejected)")
            }
            // Outside the changed word the texts are identical, punctuation included.
            #expect(pair.chosen.filter { !$0.isLetter && !$0.isNumber } == pair.rejected.filter { !$0.isLetter && !$0.isNumber })
            // The chosen answer is the truth; a rejected short answer is not.
            let question = pair.prompt.replacingOccurrences(of: " " + QuestionAnswer.shortAnswerInstruction, with: "")
            let truth = try #require(IndependentSolver.answer(question, type: pair.type, in: world.scenes[pair.sceneIndex]))
            #expect(pair.chosen.lowercased().contains(truth))
            if pair.chosen == truth { #expect(pair.rejected != truth) }
        }
    }

    @Test("the grounded-negative helper changes only the targeted answer and keeps capitals")
    func groundedNegativeHelper() {
        var random = WorldRandom(seed: 9)
        for _ in 0..<50 {
            let negative = GroundedNegative.make(from: "The red circle is in the top left.", changing: "top left", random: &random)!
            #expect(negative.hasPrefix("The red circle is in the "))
            #expect(negative != "The red circle is in the top left.")
            let capital = GroundedNegative.make(from: "Red circle", changing: "red", random: &random)!
            #expect(capital.first!.isUppercase && capital.hasSuffix(" circle") && capital != "Red circle")
            let relation = GroundedNegative.make(from: "to the left of the square", categories: [.relation], random: &random)
            #expect(relation == "to the right of the square")
        }
        #expect(GroundedNegative.make(from: "The circle is red.", changing: "blue", random: &random) == nil)
        #expect(GroundedNegative.make(from: "nothing to see", random: &random) == nil)
        let qa = QuestionAnswer(type: .position, question: "Where is the circle?", answer: "top left", sentence: "")
        #expect(qa.isAnsweredBy(" Top  left.") && !qa.isAnsweredBy("top right") && !qa.isAnsweredBy("the top left"))
    }

    @Test("the held-out split shares no scene, image or arrangement with training, and each file uses its own split")
    func heldoutIsDisjoint() throws {
        let world = Self.small
        let train = Set(world.trainScenes.map(\.signature)), heldout = world.heldoutScenes
        #expect(heldout.count == 100 && world.trainScenes.count == 400)
        #expect(heldout.allSatisfy { !train.contains($0.signature) && $0.split == .heldout })
        let trainImages = Set(world.trainScenes.map(\.imagePath)), heldoutImages = Set(heldout.map(\.imagePath))
        #expect(trainImages.isDisjoint(with: heldoutImages))
        // Excluding seen arrangements does not thin out one-object scenes (only 630 exist).
        for count in 1...4 { #expect(heldout.filter { $0.objects.count == count }.count >= 12, "\(count)-object scenes") }
        #expect(world.noisyPairs.allSatisfy { trainImages.contains($0.image) })
        #expect(world.highQualityPairs.allSatisfy { trainImages.contains($0.image) })
        #expect(world.instructions.allSatisfy { trainImages.contains($0.image) })
        #expect(world.trainQuestions.allSatisfy { trainImages.contains($0.image) })
        #expect(world.trainPreferences.allSatisfy { trainImages.contains($0.image) })
        #expect(world.heldoutQuestions.allSatisfy { heldoutImages.contains($0.image) })
        #expect(world.heldoutPreferences.allSatisfy { heldoutImages.contains($0.image) })
    }

    @Test("regions.jsonl lists the training scenes and the encoder-only pictures with their records' boxes; none repeats a held-out arrangement")
    func regionFiles() throws {
        let world = Self.small
        #expect(world.encoderScenes.count == 4000 && world.encoderScenes.allSatisfy { $0.split == .encoder })
        let heldout = Set(world.heldoutScenes.map(\.signature))
        #expect(world.encoderScenes.allSatisfy { !heldout.contains($0.signature) })
        #expect(Set(world.encoderScenes.map(\.imagePath)).isDisjoint(with: Set(world.heldoutScenes.map(\.imagePath))))
        let encoderImages = Set(world.encoderScenes.map(\.imagePath))
        for text in [world.instructions.map(\.image), world.trainQuestions.map(\.image), world.highQualityPairs.map(\.image)] {
            #expect(encoderImages.isDisjoint(with: Set(text)), "no text is written about encoder-only pictures")
        }
        let lines = JSONLines.regions(world.trainScenes + world.encoderScenes).split(separator: "\n")
        #expect(lines.count == 4400)
        let record = try #require(try JSONSerialization.jsonObject(with: Data(lines[401].utf8)) as? [String: Any])
        let scene = world.encoderScenes[world.encoderScenes.startIndex + 1]
        #expect(record["image"] as? String == scene.imagePath)
        let regions = try #require(record["regions"] as? [[String: Any]])
        #expect(regions.count == scene.objects.count)
        for (region, object) in zip(regions, scene.objects) {
            #expect(region["box"] as? [Int] == [object.box.x0, object.box.y0, object.box.x1, object.box.y1])
            #expect(region["shape"] as? String == object.shape.rawValue && region["color"] as? String == object.color.rawValue)
            #expect(region["row"] as? String == object.position.row.word && region["column"] as? String == object.position.column.word)
        }
    }

    @Test("with no noise, noisy captions name only attributes the scene has; with full wrong-attribute noise, most name one it lacks")
    func noiseShares() throws {
        func noisy(_ shares: NoiseShares) throws -> WorldDataset {
            var configuration = WorldConfiguration(size: .tiny, seed: 8, noise: shares)
            configuration.noisyPairsPerScene = 3
            return try WorldDataset(configuration: configuration)
        }
        let clean = try noisy(NoiseShares(unrelated: 0, wrongAttribute: 0, partial: 0, truncation: 0, boilerplate: 0))
        let corrupt = try noisy(NoiseShares(unrelated: 0, wrongAttribute: 1, partial: 0, truncation: 0, boilerplate: 0))
        func namesOnlyPresent(_ pair: CaptionPair, in world: WorldDataset) -> Bool {
            let scene = world.scenes[pair.sceneIndex]
            let present = Set(scene.objects.flatMap { [$0.color.rawValue, $0.shape.rawValue, $0.size.rawValue] })
            let named = GroundedNegative.words(in: pair.text).map(\.text).filter {
                ObjectColor(rawValue: $0) != nil || ShapeKind(rawValue: $0) != nil || ObjectSize(rawValue: $0) != nil
            }
            return named.allSatisfy(present.contains)
        }
        #expect(clean.noisyPairs.allSatisfy { namesOnlyPresent($0, in: clean) })
        let wrong = corrupt.noisyPairs.filter { !namesOnlyPresent($0, in: corrupt) }.count
        #expect(Double(wrong) > 0.6 * Double(corrupt.noisyPairs.count), "\(wrong) of \(corrupt.noisyPairs.count)")
    }

    @Test("--max-objects 1 gives single-object scenes and no relation questions; --jitter 0 centres objects in their cells")
    func objectCountAndJitter() throws {
        var single = WorldConfiguration(size: .small, seed: 2)
        single.maxObjectsPerScene = 1
        let world = try WorldDataset(configuration: single)
        #expect(world.scenes.allSatisfy { $0.objects.count == 1 })
        #expect(!(world.trainQuestions + world.heldoutQuestions).contains { $0.qa.type == .relation })
        #expect(!world.trainQuestions.isEmpty && !world.heldoutQuestions.isEmpty)

        var centred = WorldConfiguration(size: .small, seed: 2, imageSize: 48)
        centred.placementJitter = 0
        let cell = 16.0
        for scene in try WorldDataset(configuration: centred).scenes {
            for object in scene.objects {
                let middleX = (Double(object.position.column.rawValue) + 0.5) * cell
                let middleY = (Double(object.position.row.rawValue) + 0.5) * cell
                #expect(abs(object.centerX - middleX) <= 0.5 && abs(object.centerY - middleY) <= 0.5, "\(scene.id): \(object.nounPhrase)")
            }
        }
        // The default keeps 1–4 objects and jittered placements.
        let counts = Set(Self.small.scenes.map(\.objects.count))
        #expect(counts == [1, 2, 3, 4])
    }

    @Test("a bad configuration is refused with the field named")
    func badConfiguration() {
        #expect(throws: WorldError.self) { try WorldDataset(configuration: WorldConfiguration(size: .tiny, imageSize: 8)) }
        var configuration = WorldConfiguration(size: .tiny)
        configuration.trainSceneCount = 0
        let error = #expect(throws: WorldError.self) { try WorldDataset(configuration: configuration) }
        #expect(error?.description.contains("scene counts") == true)
        var crowded = WorldConfiguration(size: .tiny)
        crowded.maxObjectsPerScene = 5
        #expect((#expect(throws: WorldError.self) { try WorldDataset(configuration: crowded) })?.description.contains("objects per scene") == true)
        var wandering = WorldConfiguration(size: .tiny)
        wandering.placementJitter = 1.5
        #expect((#expect(throws: WorldError.self) { try WorldDataset(configuration: wandering) })?.description.contains("jitter") == true)
    }
}

@Suite("Scoring captions against a record")
struct CaptionScoreTests {
    @Test("exact captions score 1 on accuracy and recall; a wrong word lowers accuracy by one attribute")
    func exactAndWrongCaptions() throws {
        let world = WorldDatasetTests.small
        for pair in world.highQualityPairs where pair.id.hasSuffix("-caption") {
            let score = CaptionScore(caption: pair.text, scene: world.scenes[pair.sceneIndex])
            #expect(score.accuracy == 1 && score.recall == 1, "\(pair.text): \(score)")
            #expect(score.stated == 4 * world.scenes[pair.sceneIndex].objects.count)
        }
        // One large red circle in the top left and one small blue square in the bottom right.
        let scene = try #require(world.scenes.first { $0.objects.count == 2 })
        let a = scene.objects[0], b = scene.objects[1]
        let wrongColor = ObjectColor.allCases.first { $0 != a.color }!
        let caption = "a \(a.size.rawValue) \(wrongColor.rawValue) \(a.shape.rawValue) in the \(a.position.phrase)"
        let score = CaptionScore(caption: caption, scene: scene)
        #expect(score.stated == 4 && score.correct == 3 && score.recall == 0.5, "\(caption): \(score)")
        let missingShape = ShapeKind.allCases.first { shape in !scene.objects.contains { $0.shape == shape } }!
        let none = CaptionScore(caption: "a \(b.color.rawValue) \(missingShape.rawValue)", scene: scene)
        #expect(none.stated == 2 && none.correct == 0 && none.objectsMentioned == 0)
        #expect(CaptionScore(caption: "stock photo", scene: scene).accuracy == 0)
    }
}
