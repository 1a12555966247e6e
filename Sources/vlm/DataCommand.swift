import ArgumentParser
import Foundation
import World

extension WorldConfiguration.Size: ExpressibleByArgument {}

/// `vlm data …`: data sets.
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Make data sets.",
        subcommands: [Synthesize.self])

    struct Synthesize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "synth",
            abstract: "Generate the built-in image–text world: images, captions, instructions, questions, preferences.",
            discussion: """
                Writes images/NNNNNN.png, pretrain-noisy.jsonl, pretrain-hq.jsonl, sft.json, qa-train.jsonl, \
                qa-heldout.jsonl, preferences.jsonl, preferences-heldout.jsonl, corpus.txt, regions.jsonl and \
                regions-heldout.jsonl (boxes and labels for image-encoder pretraining) and world.json (see Docs/world.md). The same seed gives the same bytes. Example:
                  vlm data synth --out data/world --seed 1 --size small
                """)

        @Option(help: "The folder to write (created; must be absent or empty unless --force).")
        var out: String

        @Option(help: "Seed: the same seed gives byte-identical files.")
        var seed: UInt64 = 0

        @Option(help: "Preset amount: tiny (48+16 scenes, 16 encoder-only pictures), small (400+100, 4000) or default (4000+500, 8000).")
        var size: WorldConfiguration.Size = .default

        @Option(help: "Training scenes (overrides the preset).")
        var scenes: Int?

        @Option(help: "Held-out scenes (overrides the preset).")
        var heldout: Int?

        @Option(help: "Encoder-only pictures, listed with the training scenes in regions.jsonl for image-encoder pretraining (overrides the preset).")
        var encoderScenes: Int?

        @Option(help: "Image width and height in pixels.")
        var imageSize: Int = 64

        @Option(help: "The most objects in a scene (1–4); 1 gives single-object scenes.")
        var maxObjects: Int = 4

        @Option(help: "How far objects wander inside their grid cell (0: centred, 1: as far as the cell allows).")
        var jitter: Double = 1

        @Option(help: ArgumentHelp("The question types the world asks (comma-separated): color, shape, size, count, position, relation, existence. Default: all.",
                                   valueName: "types"))
        var questionTypes: String?

        @Option(help: ArgumentHelp("A noisy alt-text share KIND=P (repeatable): unrelated, wrong-attribute, partial, truncation, boilerplate.",
                                   valueName: "kind=share"))
        var noise: [String] = []

        @Flag(help: "Replace a non-empty existing folder.")
        var force = false

        func configurationValue() throws -> WorldConfiguration {
            var configuration = WorldConfiguration(size: size, seed: seed, imageSize: imageSize)
            if let scenes { configuration.trainSceneCount = scenes }
            if let heldout { configuration.heldoutSceneCount = heldout }
            if let encoderScenes { configuration.encoderSceneCount = encoderScenes }
            configuration.maxObjectsPerScene = maxObjects
            configuration.placementJitter = jitter
            if let questionTypes {
                let named: [QuestionType] = try commaSeparated(questionTypes, option: "--question-types", noun: "a question type")
                guard !named.isEmpty else { throw ValidationError("--question-types: give at least one type") }
                configuration.questionTypes = QuestionType.allCases.filter(named.contains)
            }
            for option in noise {
                let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let share = Double(parts[1]) else {
                    throw ValidationError("--noise \(option): expected KIND=SHARE, e.g. unrelated=0.1")
                }
                switch parts[0] {
                case "unrelated": configuration.noise.unrelated = share
                case "wrong-attribute": configuration.noise.wrongAttribute = share
                case "partial": configuration.noise.partial = share
                case "truncation": configuration.noise.truncation = share
                case "boilerplate": configuration.noise.boilerplate = share
                default:
                    throw ValidationError("--noise \(option): KIND must be unrelated, wrong-attribute, partial, truncation or boilerplate")
                }
            }
            return configuration
        }

        func validate() throws {
            let configuration = try configurationValue()
            do { try configuration.validate() } catch { throw ValidationError("\(error)") }
        }

        func run() throws {
            let folder = URL(fileURLWithPath: out).resolvingSymlinksInPath()   // a link to a folder is written through
            let start = Date()
            do {
                try WorldWriter.checkDestination(folder, replacingExisting: force)
                let dataset = try WorldDataset(configuration: configurationValue())
                try WorldWriter.write(dataset, to: folder, replacingExisting: force)
                let seconds = Date().timeIntervalSince(start)
                print("wrote \(out): \(dataset.trainScenes.count) training and \(dataset.heldoutScenes.count) held-out scenes, "
                      + "\(dataset.encoderScenes.count) encoder-only pictures (\(dataset.configuration.imageSize)×\(dataset.configuration.imageSize)), "
                      + "\(dataset.noisyPairs.count) noisy and \(dataset.highQualityPairs.count) high-quality pairs, "
                      + "\(dataset.instructions.count) instructions, \(dataset.trainQuestions.count)+\(dataset.heldoutQuestions.count) questions, "
                      + "\(dataset.trainPreferences.count)+\(dataset.heldoutPreferences.count) preference pairs "
                      + "in \(String(format: "%.1f", seconds)) s")
            } catch let error as WorldError {
                throw CommandFailure(error.description)
            }
        }
    }
}
