import ArgumentParser
import Checkpoint
import Foundation
import Media
import TensorCore
import Training
import World

/// `vlm run`: the main job, from nothing — the built-in world, its tokenizer and small base Llama
/// (trained on text only), the Llama 3.2 Vision adapters, the staged vision recipe, and a report.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "The main job: build a vision model on a frozen small Llama from nothing, and report what each stage did.",
        discussion: """
            Steps (each is a vlm command you can also run alone; finished steps are reused, so a second run \
            only redoes what changed): vlm data synth → vlm tokenizer train → vlm llama init → vlm train \
            (the base Llama on the world's text: the no-vision baseline) → vlm adapters init → vlm train \
            (the vision recipe) → vlm compare, when the recipe has a compare: section (the fusion designs on the \
            same world, base Llama and encoder; Docs/llava.md) → vlm eval of the base Llama and of every stage. Writes OUT/report.html (charts and \
            sample pictures with every model's answers; self-contained), OUT/report.md and \
            OUT/metrics.json.
            """)

    @Option(help: "The job's folder (created; reused).") var out = "runs/default"
    @Option(help: "World size: tiny, small or default.") var size = "small"
    @Option(help: "Seed of the world and of every stage.") var seed: UInt64 = 0
    @Option(help: "The vision recipe (default: pipelines/default.yaml in the repository).") var recipe: String?
    @Option(help: "The base Llama's recipe (default: pipelines/world-base-llama.yaml).") var baseRecipe: String?
    @Option(help: "The adapter layout (default: adapters/world.yaml).") var adapter: String?
    @Option(name: .customLong("set"), help: "Override a key of the vision recipe (STAGE.KEY=VALUE; repeatable).")
    var overrides: [String] = []
    @Flag(help: "Skip the recipe's compare: section (the fusion comparison).") var noCompare = false

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0)   // the steps' lines interleave with progress on stderr in order
        let started = Date()
        let root = URL(fileURLWithPath: out)
        func path(_ name: String) -> String { root.appendingPathComponent(name).path }
        func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path(name)) }
        func step(_ title: String) { FileHandle.standardError.write(Data("\n### \(title)\n".utf8)) }
        let recipe = try self.recipe ?? RepositoryFiles.require("pipelines/default.yaml", option: "--recipe")
        let baseRecipe = try self.baseRecipe ?? RepositoryFiles.require("pipelines/world-base-llama.yaml", option: "--base-recipe")
        let adapter = try self.adapter ?? RepositoryFiles.require("adapters/world.yaml", option: "--adapter")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let seedSetting = "seed=\(seed)"

        step("1/6 the world (vlm data synth)")
        if !exists("world/world.json") {
            // The pictures are drawn at the image encoder's tile size, so no resampling blurs them.
            var imageSize: [String] = []
            if case .adapters(let layout) = try loadModelLayout(path: adapter) { imageSize = ["--image-size", "\(layout.vision.imageSize)"] }
            try runVLM(["data", "synth", "--out", path("world"), "--size", size, "--seed", "\(seed)"] + imageSize)
        }
        step("2/6 its tokenizer (vlm tokenizer train)")
        if !exists("tokenizer/tokenizer.json") {
            try runVLM(["tokenizer", "train", "--corpus", path("world/corpus.txt"), "--vocab-size", "512", "--out", path("tokenizer")])
        }
        step("3/6 the base Llama, trained on the world's text only (vlm llama init, vlm train)")
        if !exists("base-init/config.json") {
            try runVLM(["llama", "init", "--tokenizer", path("tokenizer"), "--out", path("base-init"), "--seed", "\(seed)"])
        }
        try runVLM(["train", baseRecipe, "--base", path("base-init"), "--out", path("base"), "--data-root", path("world"),
                    "--set", seedSetting])
        let base = try lastStageModel(recipe: baseRecipe, run: path("base"))
        step("4/6 the Llama 3.2 Vision adapters (vlm adapters init)")
        if !exists("vision-init/config.json") {
            try runVLM(["adapters", "init", "--text-model", base, "--adapter", adapter, "--out", path("vision-init"), "--seed", "\(seed)"])
        }
        step("5/6 the vision recipe (vlm train)")
        try runVLM(["train", recipe, "--base", path("vision-init"), "--out", path("run"), "--data-root", path("world"),
                    "--set", seedSetting] + overrides.flatMap { ["--set", $0] })

        let visionRecipe = try Recipe.load(from: URL(fileURLWithPath: recipe))
        let comparison = visionRecipe.comparison
        if comparison != nil && !noCompare {
            step("5/6 (continued) the fusion designs compared on the same world (vlm compare)")
            // Every design starts from the recipe's pretrained image encoder, as LLaVA starts from CLIP's.
            let encoder = visionRecipe.stages.last { $0.kind == .encoder }
            try runVLM(["compare", recipe, "--base", base, "--adapter", adapter, "--out", path("compare"), "--data-root", path("world"),
                        "--seed", "\(seed)"] + (encoder.map { ["--image-encoder", path("run/\($0.name)/model")] } ?? [])
                       + overrides.flatMap { ["--set", $0] })
        }

        step("6/6 evaluation and report")
        let heldOut = URL(fileURLWithPath: path("world/qa-heldout.jsonl"))
        let recipeStages = visionRecipe.stages
        let stages = recipeStages.map(\.name)
        // A reward stage's output scores answers and an encoder stage's has untrained adapters:
        // neither is a policy to ask questions (their held-out figures are in their summaries).
        let policies = recipeStages.filter { $0.kind != .reward && $0.kind != .encoder }.map(\.name)
        let models = [("base Llama (no image)", base)] + policies.map { ($0, path("run/\($0)/model")) }
        var evaluations: [RunReport.Evaluation] = []
        var answers: [[String]] = []
        var questions: [QuestionAnswering.Question] = []
        for (name, directory) in models {
            let model = URL(fileURLWithPath: directory)
            evaluations.append(.init(name: name, metrics: try evaluateModel(directory: model, datasets: [heldOut], maxNewTokens: 8)))
            // The world asks 4 questions per picture: a stride of 5 shows a new picture and the next type each time.
            let shown = try sampleAnswers(directory: model, dataset: heldOut, count: Self.shownSamples, stride: 5, maxNewTokens: 8)
            questions = shown.map(\.question)
            answers.append(shown.map(\.answer))
        }
        let samples = try questions.enumerated().map { index, question in
            RunReport.Sample(id: question.id, image: try question.images.first.map { try PNGEncoder.encode($0) } ?? Data(),
                             question: question.prompt, reference: question.answer, type: question.type,
                             answers: zip(models, answers).map { (model: $0.0.0, answer: $0.1[index]) })
        }
        let summaries = try stages.map { stage -> StageSummary in
            try JSONDecoder().decode(StageSummary.self, from: Data(contentsOf: URL(fileURLWithPath: path("run/\(stage)/summary.json"))))
        }
        let curves = try stages.map { (stage: $0, points: try lossCurve(URL(fileURLWithPath: path("run/\($0)/metrics.jsonl")))) }
        var report = RunReport(evaluations: evaluations, summaries: summaries, lossCurves: curves, samples: samples,
                               seconds: Date().timeIntervalSince(started),
                               machine: "CPU: \(CPUFeatures.current), \(ProcessInfo.processInfo.activeProcessorCount) cores.")
        if comparison != nil && !noCompare {
            report.comparison = try ComparisonReport.load(from: root.appendingPathComponent("compare/comparison.json"))
        }
        // The captioning stages' own metric: held-out scenes described by every model, scored against their records.
        let captions = Array(try CompareCommand.captionSamples(world: URL(fileURLWithPath: path("world/\(WorldDataset.FileName.record)")))
            .prefix(Self.describedScenes))
        // Asked in chat (what SFT teaches), and as the pretraining pairs lay a caption out (what those stages teach).
        for (index, (_, directory)) in models.enumerated() {
            // Each request with the names of its two figures (recall is not reported with blanked images);
            // the base Llama sees no image anyway: no blanked run for it.
            let requests: [(request: DescriptionRequest, accuracy: String, recall: String?)] = [
                (DescriptionRequest(layout: .chat), "caption_accuracy", "caption_recall"),
                (DescriptionRequest(layout: .caption), "caption_layout_accuracy", "caption_layout_recall"),
            ] + (index > 0 ? [(DescriptionRequest(layout: .caption, blankImages: true), "caption_layout_accuracy_blank_images", nil)] : [])
            let scores = try captionScores(directory: URL(fileURLWithPath: directory), samples: captions, requests: requests.map(\.request))
            for (entry, score) in zip(requests, scores) {
                report.evaluations[index].metrics[entry.accuracy] = score.accuracy
                if let recall = entry.recall { report.evaluations[index].metrics[recall] = score.recall }
            }
        }
        if let rewardStage = recipeStages.first(where: { $0.kind == .reward }) {
            // What the policies say, scored by the job's reward model: before (SFT) and after rejection sampling and DPO.
            let rewardModel = URL(fileURLWithPath: path("run/\(rewardStage.name)/model"))
            var series: [(name: String, values: [Double])] = []
            var scoredByStage: [String: [ScoredAnswer]] = [:]
            for stage in recipeStages where [.sft, .rejection, .dpo].contains(stage.kind) {
                let scored = try scoreHeldOutAnswers(policy: URL(fileURLWithPath: path("run/\(stage.name)/model")), rewardModel: rewardModel,
                                                     dataset: heldOut, maxSamples: Self.rewardScoredQuestions, maxNewTokens: 8)
                scoredByStage[stage.name] = scored
                series.append((stage.name, scored.map(\.reward)))
                if let index = evaluations.firstIndex(where: { $0.name == stage.name }) {
                    report.evaluations[index].metrics["held_out_reward"] = scored.meanReward
                }
            }
            // A post-training stage against the policy it started from.
            for (index, stage) in recipeStages.enumerated() where [.rejection, .dpo].contains(stage.kind) {
                guard let from = recipeStages.inputStageName(at: index), let before = scoredByStage[from], let after = scoredByStage[stage.name] else { continue }
                report.pairedChanges.append(PairedChange(before: from, before, after: stage.name, after))
            }
            report.rewardDistributions.append((title: "Held-out reward of each policy's answers (the first \(Self.rewardScoredQuestions) held-out questions, scored by \(rewardStage.name))",
                                               series: series))
        }
        for stage in recipeStages where stage.kind == .rejection {
            let rewards = try rejectionRewards(stageFolder: URL(fileURLWithPath: path("run/\(stage.name)")))
            report.rewardDistributions.append((title: "Rejection sampling (\(stage.name)): reward of every candidate and of those kept",
                                               series: [("all candidates", rewards.all), ("kept", rewards.kept)]))
        }
        try AtomicFile.write(Data(report.markdown.utf8), to: root.appendingPathComponent("report.md"))
        try AtomicFile.write(report.json, to: root.appendingPathComponent("metrics.json"))
        try AtomicFile.write(Data(report.html.utf8), to: root.appendingPathComponent("report.html"))
        print(report.headline)
        print("Report: \(path("report.html"))  (also report.md and metrics.json there)")
    }

    /// Held-out questions shown with their pictures and every model's answers.
    static let shownSamples = 8

    /// Held-out questions whose answers, from each policy, the reward model scores for the report.
    static let rewardScoredQuestions = 400

    /// Held-out scenes every model describes for caption accuracy.
    static let describedScenes = 100

    /// A stage's training loss by step, from its `metrics.jsonl` (evaluation lines have no loss).
    private func lossCurve(_ file: URL) throws -> [(step: Int, loss: Double)] {
        let text = try String(contentsOf: file, encoding: .utf8)
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let step = object["step"] as? Int, let loss = object["loss"] as? Double, object["skipped_step"] as? Bool != true
            else { return nil }
            return (step, loss)
        }
    }

    /// The output model of a recipe's last stage in a run folder.
    private func lastStageModel(recipe: String, run: String) throws -> String {
        guard let last = try Recipe.load(from: URL(fileURLWithPath: recipe)).stages.last else { throw CommandFailure("\(recipe) has no stages") }
        return URL(fileURLWithPath: run).appendingPathComponent(last.name).appendingPathComponent("model").path
    }
}

/// Runs a `vlm` command line in this process (the main job's steps are ordinary commands).
func runVLM(_ arguments: [String]) throws {
    var command = try VLM.parseAsRoot(arguments)
    try command.run()
}
