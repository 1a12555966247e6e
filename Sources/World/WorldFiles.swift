import Foundation
import Media

/// A file of the data set: its path relative to the data set's folder and its bytes.
public struct WorldFile: Sendable {
    public var path: String
    public var contents: Data
}

extension WorldDataset {
    /// The file names, relative to the data set's folder.
    public enum FileName {
        public static let noisyPairs = "pretrain-noisy.jsonl"
        public static let highQualityPairs = "pretrain-hq.jsonl"
        public static let instructions = "sft.json"
        public static let trainQuestions = "qa-train.jsonl"
        public static let heldoutQuestions = "qa-heldout.jsonl"
        public static let trainPreferences = "preferences.jsonl"
        public static let heldoutPreferences = "preferences-heldout.jsonl"
        public static let corpus = "corpus.txt"
        public static let trainRegions = "regions.jsonl"
        public static let heldoutRegions = "regions-heldout.jsonl"
        public static let record = "world.json"
    }

    /// Every file of the data set, images included, in a fixed order. Text files are UTF-8 JSON
    /// with keys in a fixed order, so the same data set always gives the same bytes.
    /// - Throws: ``WorldError`` when an image cannot be encoded.
    public func files() throws -> [WorldFile] {
        var files: [WorldFile] = []
        for scene in scenes {
            do {
                files.append(WorldFile(path: scene.imagePath, contents: try PNGEncoder.encode(SceneRenderer.render(scene))))
            } catch {
                throw WorldError("\(scene.imagePath): cannot encode the image (\(error))")
            }
        }
        func text(_ name: String, _ body: String) { files.append(WorldFile(path: name, contents: Data(body.utf8))) }
        text(FileName.noisyPairs, JSONLines.pairs(noisyPairs))
        text(FileName.highQualityPairs, JSONLines.pairs(highQualityPairs))
        text(FileName.instructions, JSONLines.instructions(instructions))
        text(FileName.trainQuestions, JSONLines.questions(trainQuestions))
        text(FileName.heldoutQuestions, JSONLines.questions(heldoutQuestions))
        text(FileName.trainPreferences, JSONLines.preferences(trainPreferences))
        text(FileName.heldoutPreferences, JSONLines.preferences(heldoutPreferences))
        text(FileName.corpus, corpusText)
        text(FileName.trainRegions, JSONLines.regions(trainScenes + encoderScenes))
        text(FileName.heldoutRegions, JSONLines.regions(heldoutScenes))
        text(FileName.record, recordJSON())
        return files
    }

    /// `world.json`: the generator, the configuration, the counts and every scene's record.
    public func recordJSON() -> String {
        typealias J = JSONLines
        let c = configuration
        let counts: [(String, Int)] = [
            ("scenes_train", c.trainSceneCount), ("scenes_heldout", c.heldoutSceneCount), ("scenes_encoder", encoderScenes.count),
            ("pretrain_noisy", noisyPairs.count), ("pretrain_hq", highQualityPairs.count), ("sft", instructions.count),
            ("qa_train", trainQuestions.count), ("qa_heldout", heldoutQuestions.count),
            ("preferences_train", trainPreferences.count), ("preferences_heldout", heldoutPreferences.count),
            ("corpus_documents", corpus.count),
        ]
        let noise = c.noise
        var out = "{\n"
        out += "  \"generator\": \"vlmkit-world\",\n  \"generator_version\": \(Self.generatorVersion),\n"
        out += "  \"seed\": \(c.seed),\n  \"image_size\": \(c.imageSize),\n  \"max_objects_per_scene\": \(c.maxObjectsPerScene),\n  \"placement_jitter\": \(c.placementJitter),\n"
        out += "  \"noise\": {\"unrelated\": \(noise.unrelated), \"wrong_attribute\": \(noise.wrongAttribute), "
            + "\"partial\": \(noise.partial), \"truncation\": \(noise.truncation), \"boilerplate\": \(noise.boilerplate)},\n"
        out += "  \"counts\": {" + counts.map { "\(J.string($0.0)): \($0.1)" }.joined(separator: ", ") + "},\n"
        out += "  \"colors\": {" + ObjectColor.allCases.map { "\(J.string($0.rawValue)): \(J.ints($0.rgb))" }.joined(separator: ", ") + "},\n"
        out += "  \"question_types\": [" + c.questionTypes.map { J.string($0.rawValue) }.joined(separator: ", ") + "],\n"
        out += "  \"box_format\": \"[x0, y0, x1, y1] in pixels, x1 and y1 exclusive\",\n"
        out += "  \"scenes\": [\n"
        out += scenes.map { scene in
            let objects = scene.objects.map { o in
                "{\"shape\": \(J.string(o.shape.rawValue)), \"color\": \(J.string(o.color.rawValue)), "
                    + "\"size\": \(J.string(o.size.rawValue)), \"position\": \(J.string(o.position.phrase)), "
                    + "\"row\": \(o.position.row.rawValue), \"column\": \(o.position.column.rawValue), "
                    + "\"center\": [\(o.centerX), \(o.centerY)], \"box\": \(J.ints([o.box.x0, o.box.y0, o.box.x1, o.box.y1]))}"
            }
            return "    {\"id\": \(J.string(scene.id)), \"image\": \(J.string(scene.imagePath)), \"split\": \(J.string(scene.split.rawValue)), "
                + "\"background\": [\(J.ints(scene.backgroundTop)), \(J.ints(scene.backgroundBottom))], "
                + "\"objects\": [" + objects.joined(separator: ", ") + "]}"
        }.joined(separator: ",\n")
        out += "\n  ]\n}\n"
        return out
    }
}

/// The JSON text of the data set's files, written by hand so that key order is fixed.
enum JSONLines {
    static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    static func ints<T: BinaryInteger>(_ values: [T]) -> String { "[" + values.map { "\($0)" }.joined(separator: ", ") + "]" }

    static func pairs(_ pairs: [CaptionPair]) -> String {
        pairs.map { "{\"id\": \(string($0.id)), \"image\": \(string($0.image)), \"text\": \(string($0.text))}\n" }.joined()
    }

    /// Region annotations for image-encoder pretraining: each object's box and what it is.
    static func regions<Scenes: Sequence<Scene>>(_ scenes: Scenes) -> String {
        scenes.map { scene in
            let regions = scene.objects.map { o in
                "{\"box\": \(ints([o.box.x0, o.box.y0, o.box.x1, o.box.y1])), \"shape\": \(string(o.shape.rawValue)), "
                    + "\"color\": \(string(o.color.rawValue)), \"size\": \(string(o.size.rawValue)), "
                    + "\"row\": \(string(o.position.row.word)), \"column\": \(string(o.position.column.word))}"
            }
            return "{\"id\": \(string(scene.id)), \"image\": \(string(scene.imagePath)), \"regions\": [\(regions.joined(separator: ", "))]}\n"
        }.joined()
    }

    static func questions(_ records: [QuestionRecord]) -> String {
        records.map {
            "{\"id\": \(string($0.id)), \"image\": \(string($0.image)), \"question\": \(string($0.prompt)), "
                + "\"answer\": \(string($0.qa.answer)), \"type\": \(string($0.qa.type.rawValue))}\n"
        }.joined()
    }

    static func instructions(_ samples: [InstructionSample]) -> String {
        let entries = samples.map { sample -> String in
            var turns: [String] = []
            for (k, exchange) in sample.exchanges.enumerated() {
                let human = k == 0 ? "<image>\n" + exchange.human : exchange.human
                turns.append("{\"from\": \"human\", \"value\": \(string(human))}")
                turns.append("{\"from\": \"gpt\", \"value\": \(string(exchange.assistant))}")
            }
            return "  {\"id\": \(string(sample.id)), \"image\": \(string(sample.image)), \"conversations\": [" + turns.joined(separator: ", ") + "]}"
        }
        return "[\n" + entries.joined(separator: ",\n") + "\n]\n"
    }

    static func preferences(_ pairs: [PreferencePair]) -> String {
        func message(_ role: String, _ text: String) -> String {
            "[{\"role\": \"\(role)\", \"content\": [{\"type\": \"text\", \"text\": \(string(text))}]}]"
        }
        return pairs.map {
            "{\"id\": \(string($0.id)), \"images\": [\(string($0.image))], "
                + "\"prompt\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\"}, {\"type\": \"text\", \"text\": \(string($0.prompt))}]}], "
                + "\"chosen\": \(message("assistant", $0.chosen)), \"rejected\": \(message("assistant", $0.rejected)), "
                + "\"type\": \(string($0.type.rawValue))}\n"
        }.joined()
    }
}
