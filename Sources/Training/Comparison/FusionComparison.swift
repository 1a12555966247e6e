import Checkpoint
import Foundation
import Media
import Models
import Processing
import TensorCore

/// One design trained with one seed, and what was measured of it.
public struct ComparisonRun: Codable, Sendable {
    public var design: AdapterLayout.Architecture
    /// How the language model trained in the comparison's language-model stages (nil: frozen, as
    /// in results written before the grid existed).
    public var languageModel: LanguageModelTraining.Mode? = nil
    public var seed: UInt64
    /// Held-out metrics of the last stage's model, as ``evaluateModel(directory:datasets:maxSamples:maxNewTokens:maxLength:)``
    /// gives them (`exact_match`, `exact_match/TYPE`, `loss`, and `…_blank_images`).
    public var evaluation: [String: Double]
    public var textDrift: TextDrift
    /// Trainable parameters of the last stage.
    public var trainableParameters: Int
    /// Over every training step of every stage: optimiser steps, samples' images, text positions
    /// (the token-stream model's include its image positions), and seconds.
    public var steps: Int
    public var trainingImages: Int
    public var trainingTokens: Int
    public var trainingSeconds: Double
    /// Text positions one image takes (1: the cross-attention model's `<|image|>` marker).
    public var positionsPerImage: Int
    public var generation: [GenerationTiming]
    /// Peak resident memory while training, evaluating and timing this run (the training's peak is
    /// the one measured when its stages ran).
    public var peakMemoryMB: Double
    /// Mean ``CaptionScore`` accuracy of greedy descriptions of held-out scenes (nil: not measured).
    public var captionAccuracy: Double? = nil
    /// Mean share of a held-out scene's objects its description mentions.
    public var captionRecall: Double? = nil

    /// The column this run belongs to.
    public var arm: ComparisonArm { ComparisonArm(design: design, languageModel: languageModel ?? .frozen) }

    enum CodingKeys: String, CodingKey {
        case design, languageModel = "language_model", captionAccuracy = "caption_accuracy", captionRecall = "caption_recall"
        case seed, evaluation, textDrift = "text_drift", trainableParameters = "trainable_parameters", steps
        case trainingImages = "training_images", trainingTokens = "training_tokens", trainingSeconds = "training_seconds"
        case positionsPerImage = "positions_per_image", generation, peakMemoryMB = "peak_memory_mb"
    }

    /// The run's figures by name, as the comparison table lists them.
    public var figures: [String: Double] {
        var figures: [String: Double] = [:]
        for (key, value) in evaluation where key.hasPrefix("exact_match") { figures[key] = value }
        figures["held_out_loss"] = evaluation["loss"]
        figures["held_out_loss_blank_images"] = evaluation["loss_blank_images"]
        figures["text_kl"] = textDrift.klDivergence
        figures["text_perplexity"] = textDrift.perplexity
        figures["base_text_perplexity"] = textDrift.basePerplexity
        figures["trainable_parameters"] = Double(trainableParameters)
        figures["training_images_per_s"] = Double(trainingImages) / max(trainingSeconds, 1e-9)
        figures["training_tokens_per_s"] = Double(trainingTokens) / max(trainingSeconds, 1e-9)
        figures["positions_per_image"] = Double(positionsPerImage)
        for timing in generation {
            figures["prefill_ms/\(timing.images)"] = 1000 * timing.prefillSeconds
            figures["decode_tokens_per_s/\(timing.images)"] = timing.decodeTokensPerSecond
            figures["prompt_tokens/\(timing.images)"] = Double(timing.promptTokens)
        }
        figures["peak_memory_mb"] = peakMemoryMB
        figures["caption_accuracy"] = captionAccuracy
        figures["caption_recall"] = captionRecall
        // A figure that could not be measured (no held-out tokens, say) is left out, not averaged.
        return figures.filter { $0.value.isFinite }
    }

    /// JSON coding that keeps a non-finite measurement as a string rather than failing.
    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return decoder
    }
}

/// `vlm compare`: trains each fusion design on the same recipe, data, steps, base Llama and image
/// encoder (same layout, same seed: the same initial weights), one run per design and seed, then
/// measures each and writes `comparison.json` and `comparison.md`.
///
/// ```
/// OUT/DESIGN/seed-S/init/          the design's starting model (vlm adapters init)
/// OUT/DESIGN/seed-S/run/           its stages (a Pipeline run folder: resumable)
/// OUT/DESIGN/seed-S/result.json    its measurements (a finished run is not redone)
/// OUT/comparison.json, .md         mean and spread over seeds, per design
/// ```
public struct FusionComparison {
    public var recipe: Recipe
    public var settings: ComparisonSettings
    /// The frozen text model every design is built on.
    public var baseLlama: URL
    /// The cross-attention layout; the token-stream designs take its encoder.
    public var layout: AdapterLayout
    public var output: URL
    /// The first seed (seeds are `firstSeed ..< firstSeed + settings.seeds`).
    public var firstSeed: UInt64 = 0
    /// A checkpoint whose image encoder every design starts from (an `encoder` stage's output);
    /// nil: each design's freshly initialised one (the same for all, by seed).
    public var imageEncoder: URL? = nil
    /// Images in the prompt for the generation timings.
    public var timedImageCounts = [1, 2, 4]
    public var onEvent: (TrainingEvent) -> Void = { _ in }
    /// Progress lines ("llava-linear seed 0: training").
    public var onProgress: (String) -> Void = { _ in }
    public var shouldStop: () -> Bool = { false }
    public var warn: @Sendable (String) -> Void = { _ in }
    /// The held-out scenes to describe for caption accuracy, each an image and a scorer of a
    /// description (``CaptionScore`` lives in the World module, which the CLI brings); nil: not measured.
    public var captionSamples: (() throws -> [CaptionSample])? = nil
    /// Descriptions generated per run for caption accuracy (0: every sample).
    public var captionSampleLimit = 100

    public init(recipe: Recipe, settings: ComparisonSettings, baseLlama: URL, layout: AdapterLayout, output: URL) {
        self.recipe = recipe
        self.settings = settings
        self.baseLlama = baseLlama
        self.layout = layout
        self.output = output
    }

    /// Runs (or reuses) every design and seed, then writes the summary files.
    @discardableResult
    public func run() throws -> ComparisonReport {
        guard layout.architecture == .crossAttention else {
            throw TrainingError("the comparison's layout must be a cross-attention one (the token-stream designs take its encoder); it is \(layout.architecture.rawValue)")
        }
        // Every arm's recipe is checked before any work starts.
        var recipes: [ComparisonArm: Recipe] = [:]
        let arms = settings.arms
        for arm in arms { recipes[arm] = try recipe(for: arm, seed: firstSeed) }
        guard let last = recipes[arms[0]]!.stages.last, !last.evalDatasets.isEmpty else {
            throw TrainingError("\(recipe.file): the comparison's last stage needs eval_datasets (held-out questions) to measure the designs")
        }
        let captions = try captionSamples?().prefix(captionSampleLimit > 0 ? captionSampleLimit : .max).map { $0 }
        // Which encoder the runs start from; a run made from another one is stale.
        let encoder = try imageEncoder.map { "pretrained \(try ImageEncoderTransplant.fingerprint(of: $0))" } ?? "fresh"
        let started = Date()
        var runs: [ComparisonRun] = []
        for arm in arms {
            for offset in 0..<UInt64(settings.seeds) {
                runs.append(try run(arm: arm, seed: firstSeed + offset, captions: captions, encoder: encoder))
            }
        }
        let report = ComparisonReport(runs: runs, arms: arms, stages: recipes[arms[0]]!.stages.map(\.name),
                                      seconds: Date().timeIntervalSince(started))
        try AtomicFile.write(report.json, to: output.appendingPathComponent("comparison.json"))
        try AtomicFile.write(Data(report.markdown.utf8), to: output.appendingPathComponent("comparison.md"))
        return report
    }

    func recipe(for arm: ComparisonArm, seed: UInt64) throws -> Recipe {
        try recipe.forComparison(design: arm.design, stages: settings.stages, overrides: settings.overrides, seed: seed,
                                 languageModel: arm.languageModel, languageModelStages: settings.languageModelStages)
    }

    /// - Parameter encoder: "fresh", or "pretrained" and the fingerprint of ``imageEncoder``.
    func run(arm: ComparisonArm, seed: UInt64, captions: [CaptionSample]?, encoder: String) throws -> ComparisonRun {
        let design = arm.design, label = arm.description
        let folder = output.appendingPathComponent(arm.folderName).appendingPathComponent("seed-\(seed)")
        let resultURL = folder.appendingPathComponent("result.json")
        // A run started from another image encoder than this one is stale (folders without the
        // mark started from the fresh one).
        let encoderMark = folder.appendingPathComponent("image_encoder.txt")
        let recorded = (try? String(contentsOf: encoderMark, encoding: .utf8)) ?? "fresh"
        if recorded != encoder, FileManager.default.fileExists(atPath: folder.path) {
            onProgress("\(label) seed \(seed): started from another image encoder (\(recorded)); starting again")
            try FileManager.default.removeItem(at: folder)
        }
        if let data = FileManager.default.contents(atPath: resultURL.path), let done = try? ComparisonRun.decoder().decode(ComparisonRun.self, from: data),
           captions == nil || done.captionAccuracy != nil {
            onProgress("\(label) seed \(seed): finished earlier (\(resultURL.path))")
            return done
        }
        let recipe = try self.recipe(for: arm, seed: seed)
        let initial = folder.appendingPathComponent("init")
        if !FileManager.default.fileExists(atPath: initial.appendingPathComponent("config.json").path) {
            onProgress("\(label) seed \(seed): the initial model")
            var designLayout = layout
            designLayout.architecture = design
            try DirectoryCommit.write(initial) { building in
                if design == .crossAttention {
                    try AdapterInitialization.initialize(textModel: baseLlama, layout: designLayout, output: building, seed: seed)
                    try VisionCheckpointFiles.write(from: baseLlama, config: try AdapterInitialization.configuration(textModel: baseLlama, layout: designLayout), to: building)
                } else {
                    try AdapterInitialization.initializeTokenStream(textModel: baseLlama, layout: designLayout, output: building, seed: seed)
                }
                if let imageEncoder { try ImageEncoderTransplant.apply(from: imageEncoder, to: building) }
            }
            try AtomicFile.write(Data(encoder.utf8), to: encoderMark)
        }
        ProcessMemory.resetPeak()
        onProgress("\(label) seed \(seed): training \(recipe.stages.map(\.name).joined(separator: ", "))")
        let runFolder = folder.appendingPathComponent("run")
        let warn = self.warn
        let pipeline = Pipeline(recipe: recipe, base: initial, runFolder: runFolder) { stage, input in
            try TrainingEnvironment.make(stage: stage, recipe: recipe, input: input, base: initial, warn: warn)
        }
        pipeline.onEvent = onEvent
        pipeline.shouldStop = shouldStop
        // The training's peak is kept beside the run: a later invocation that only measures again
        // (its stages finished) must not report the measurement's smaller peak as the design's.
        let trainingPeakURL = folder.appendingPathComponent("training-peak-memory-mb.txt")
        if try !pipeline.run().isEmpty {
            try AtomicFile.write(Data(String(ProcessMemory.peakResidentMegabytes()).utf8), to: trainingPeakURL)
        }
        let trainingPeak = (try? String(contentsOf: trainingPeakURL, encoding: .utf8)).flatMap { Double($0) } ?? 0

        onProgress("\(label) seed \(seed): measuring")
        let last = recipe.stages.last!
        let final = runFolder.appendingPathComponent(last.name).appendingPathComponent("model")
        let evalURLs = last.evalDatasets.map { recipe.url(of: $0) }
        let evaluation = try evaluateModel(directory: final, datasets: evalURLs, maxSamples: last.evalSamples,
                                           maxNewTokens: last.evalMaxNewTokens, maxLength: 4096)
        var steps = 0, images = 0, tokens = 0, seconds = 0.0
        for stage in recipe.stages {
            let text = try String(contentsOf: runFolder.appendingPathComponent(stage.name).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            for line in text.split(separator: "\n") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      object["event"] == nil, let stepTokens = object["tokens"] as? Int, let rate = object["tokens_per_s"] as? Double, rate > 0
                else { continue }
                steps += 1
                tokens += stepTokens
                images += object["images"] as? Int ?? 0
                seconds += Double(stepTokens) / rate
            }
        }
        let summary = try JSONDecoder().decode(StageSummary.self, from: Data(contentsOf: runFolder.appendingPathComponent(last.name)
            .appendingPathComponent("summary.json")))

        let model = try LoadedModel.load(directory: final).model
        let dataLayout = try ModelDataLayout(model)
        let processor = try loadProcessor(directory: final, imageTokenID: dataLayout.imageTokenID)
        let heldOut = try evalURLs.map { try Dataset(path: $0.path) }
        let drift = try ComparisonMeasurements.textDrift(model: model, base: try LlamaForCausalLM.load(directory: baseLlama),
                                                         processor: processor, datasets: heldOut, maxSamples: max(last.evalSamples, 0))
        let question = try Evaluation(model: model, encoder: try dataLayout.sampleEncoder(processor: processor, maxLength: 4096, maxImages: 16),
                                      datasets: heldOut, maxSamples: 8, maxNewTokens: 1).questions().first { !$0.images.isEmpty }
        guard let question else { throw TrainingError("the held-out data has no question with an image to time generation on") }
        let timings = try ComparisonMeasurements.generationTimings(model: model, processor: processor, image: question.images[0],
                                                                   question: question.prompt, imageCounts: timedImageCounts)
        let captionScores = try captions.map { try ComparisonMeasurements.captionScores(model: model, processor: processor, samples: $0) }
        let result = ComparisonRun(design: design, languageModel: arm.languageModel == .frozen ? nil : arm.languageModel,
                                   seed: seed, evaluation: evaluation, textDrift: drift,
                                   trainableParameters: summary.trainableParameters, steps: steps, trainingImages: images,
                                   trainingTokens: tokens, trainingSeconds: seconds, positionsPerImage: dataLayout.imageTokensPerImage,
                                   generation: timings, peakMemoryMB: max(trainingPeak, ProcessMemory.peakResidentMegabytes()),
                                   captionAccuracy: captionScores?.accuracy, captionRecall: captionScores?.recall)
        try AtomicFile.write(try ComparisonRun.encoder().encode(result), to: resultURL)
        return result
    }
}
