import ArgumentParser
import Foundation
import Media
import Models
import Training
import World

/// `vlm compare`: the fusion designs trained and measured side by side.
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Train cross-attention and LLaVA-style token-stream fusion on the same data, encoder and budget; report both.",
        discussion: """
            Each design (cross-attention: Llama 3.2 Vision's gated cross-attention layers; llava-linear / \
            llava-mlp2x: the same image encoder's tokens projected into the token stream by one linear layer or \
            LLaVA-1.5's linear-GELU-linear) starts from the same frozen base Llama and the same encoder \
            initialisation (the layout and the seed), and trains the recipe's stages with the same data, steps and \
            batches; the groups a design lacks (crossAttentionLayers, extraEmbeddingRows) are dropped from \
            'trainable'. The recipe's compare: section gives the defaults of --archs, --stages and --seeds. Writes OUT/comparison.md and OUT/comparison.json: per design, mean and spread over seeds \
            of held-out exact match by question type, held-out loss, text-only drift against the base Llama, \
            trainable parameters, training images/s and tokens/s, prefill latency and decode speed with 1, 2 and 4 \
            images, and peak memory; with the world's world.json in the data root, caption accuracy of greedy \
            descriptions of its held-out scenes. --language-model frozen,lora runs Idefics2's grid: each design \
            once with the language model frozen and once with LoRA adapters on it (in --lora-stages, default the \
            last stage), as separate columns. Finished runs are reused and an interrupted one resumes. See Docs/llava.md.
            """)

    @OptionGroup var recipeArguments: RecipeArguments

    @Option(help: "The frozen Llama checkpoint every design is built on.")
    var base: String

    @Option(help: "The cross-attention adapter layout (adapters/*.yaml); the token-stream designs take its image encoder.")
    var adapter: String

    @Option(help: "A model folder whose image encoder every design starts from (an encoder stage's output; default: each design's fresh one).")
    var imageEncoder: String?

    @Option(help: "The comparison's folder (created; reused to resume).")
    var out: String

    @Option(help: "Designs, comma-separated: cross-attention, llava-linear, llava-mlp2x.")
    var archs: String?

    @Option(help: "Seeds per design.")
    var seeds: Int?

    @Option(help: "The recipe's stages to train, comma-separated (default: the compare: section's, else all).")
    var stages: String?

    @Option(help: "The first seed (seeds are SEED, SEED+1, …).")
    var seed: UInt64 = 0

    @Option(help: "Language-model modes, comma-separated: frozen, lora, full; each design runs once per mode (default: the compare: section's language_model, else frozen).")
    var languageModel: String?

    @Option(help: "The stages the language-model mode applies to, comma-separated (default: the compare: section's lora_stages, else the last stage).")
    var loraStages: String?

    @Option(help: "Held-out scenes described per run for caption accuracy (0: all; needs world.json in the data root).")
    var captionSamples = 100

    @Option(help: "Without a terminal, print a progress line every N steps.")
    var progressEvery = 50

    func validate() throws {
        if let seeds, seeds < 1 { throw ValidationError("--seeds must be at least 1") }
        guard progressEvery > 0 else { throw ValidationError("--progress-every must be positive") }
        guard captionSamples >= 0 else { throw ValidationError("--caption-samples must not be negative") }
    }

    func run() throws {
        let recipe: Recipe
        do {
            recipe = try recipeArguments.load()
        } catch let error as RecipeError { throw CommandFailure("\(error)") }
        var settings = recipe.comparison ?? ComparisonSettings()
        if let archs {
            settings.archs = try commaSeparated(archs, option: "--archs", noun: "a design")
        }
        if let seeds { settings.seeds = seeds }
        if let languageModel {
            settings.languageModels = try commaSeparated(languageModel, option: "--language-model", noun: "a language-model mode")
            guard Set(settings.languageModels).count == settings.languageModels.count else { throw ValidationError("--language-model: name each mode once") }
        }
        if let loraStages { settings.languageModelStages = commaSeparated(loraStages) }
        if let stages { settings.stages = commaSeparated(stages) }
        let progress = ProgressPrinter(plainEvery: progressEvery)
        var comparison = FusionComparison(recipe: recipe, settings: settings, baseLlama: URL(fileURLWithPath: base),
                                          layout: try loadAdapterLayout(path: adapter), output: URL(fileURLWithPath: out))
        comparison.firstSeed = seed
        comparison.imageEncoder = imageEncoder.map { URL(fileURLWithPath: $0) }
        comparison.captionSampleLimit = captionSamples
        let worldRecord = recipe.dataRoot.appendingPathComponent(WorldDataset.FileName.record)
        if FileManager.default.fileExists(atPath: worldRecord.path) {
            comparison.captionSamples = { try Self.captionSamples(world: worldRecord) }
        }
        comparison.onEvent = progress.handle
        comparison.onProgress = { message in
            progress.finish()
            FileHandle.standardError.write(Data("### \(message)\n".utf8))
        }
        comparison.warn = { message in progress.handle(.warning(message)) }
        InterruptFlag.install()
        comparison.shouldStop = { InterruptFlag.isSet }
        do {
            let report = try comparison.run()
            progress.finish()
            print(report.markdown)
            print("Wrote \(URL(fileURLWithPath: out).appendingPathComponent("comparison.md").path) and comparison.json")
        } catch let interrupted as TrainingInterrupted {
            progress.finish()
            FileHandle.standardError.write(Data("\(interrupted)\n".utf8))
            throw ExitCode(130)
        } catch let error as RecipeError {
            throw CommandFailure("\(error)")
        } catch let error as TrainingError {
            progress.finish()
            throw CommandFailure("\(error)")
        } catch let error as WorldError {
            progress.finish()
            throw CommandFailure("\(error)")
        }
    }

    /// The world's held-out scenes, each asked for a detailed description (the world's first
    /// description prompt) and scored against its record with ``CaptionScore``.
    static func captionSamples(world: URL) throws -> [CaptionSample] {
        let folder = world.deletingLastPathComponent()
        let prompt = WorldDataset.descriptionPrompts[0]
        return try WorldDataset.recordedScenes(from: world, split: .heldout).map { scene in
            let file = folder.appendingPathComponent(scene.imagePath)
            guard let data = FileManager.default.contents(atPath: file.path) else { throw WorldError("\(file.path): missing (a held-out scene's image)") }
            let image = try decodeImage(data: data, source: file.path)
            return CaptionSample(id: scene.id, image: image, prompt: prompt) { description in
                let score = CaptionScore(caption: description, scene: scene)
                return (score.accuracy, score.recall)
            }
        }
    }
}
