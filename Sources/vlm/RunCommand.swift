import ArgumentParser
import Checkpoint
import Foundation
import Training

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
            (the vision recipe) → vlm eval of the base Llama and of every stage. Writes OUT/report.md and \
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
        if !exists("world/world.json") { try runVLM(["data", "synth", "--out", path("world"), "--size", size, "--seed", "\(seed)"]) }
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

        step("6/6 evaluation and report")
        let heldOut = [URL(fileURLWithPath: path("world/qa-heldout.jsonl"))]
        let stages = try Recipe.load(from: URL(fileURLWithPath: recipe)).stages.map(\.name)
        var evaluations: [(name: String, metrics: [String: Double])] = []
        evaluations.append(("base Llama (no image)", try evaluateModel(directory: URL(fileURLWithPath: base), datasets: heldOut,
                                                                        maxNewTokens: 8)))
        for stage in stages {
            evaluations.append((stage, try evaluateModel(directory: URL(fileURLWithPath: path("run/\(stage)/model")), datasets: heldOut,
                                                         maxNewTokens: 8)))
        }
        let summaries = try stages.map { stage -> StageSummary in
            try JSONDecoder().decode(StageSummary.self, from: Data(contentsOf: URL(fileURLWithPath: path("run/\(stage)/summary.json"))))
        }
        let report = RunReport(evaluations: evaluations, summaries: summaries, seconds: Date().timeIntervalSince(started))
        try AtomicFile.write(Data(report.markdown.utf8), to: root.appendingPathComponent("report.md"))
        try AtomicFile.write(report.json, to: root.appendingPathComponent("metrics.json"))
        print(report.headline)
        print("Report: \(path("report.md"))  (metrics: \(path("metrics.json")))")
    }

    /// The output model of a recipe's last stage in a run folder.
    private func lastStageModel(recipe: String, run: String) throws -> String {
        guard let last = try Recipe.load(from: URL(fileURLWithPath: recipe)).stages.last else { throw CommandFailure("\(recipe) has no stages") }
        return URL(fileURLWithPath: run).appendingPathComponent(last.name).appendingPathComponent("model").path
    }
}

/// The main job's results as Markdown and JSON: exact match on held-out questions by type, with and
/// without the images, for the base Llama and after each stage, and what each stage did.
struct RunReport {
    let evaluations: [(name: String, metrics: [String: Double])]
    let summaries: [StageSummary]
    let seconds: Double

    var types: [String] {
        Set(evaluations.flatMap { $0.metrics.keys.filter { $0.hasPrefix("exact_match/") } }).map { String($0.dropFirst("exact_match/".count)) }.sorted()
    }

    static func percent(_ value: Double?) -> String { value.map { String(format: "%.1f %%", 100 * $0) } ?? "–" }

    var headline: String {
        guard let final = evaluations.last, let base = evaluations.first else { return "" }
        return "Held-out exact match: \(Self.percent(final.metrics["exact_match"])) with the image, "
            + "\(Self.percent(final.metrics["exact_match_blank_images"])) with the image blanked, "
            + "\(Self.percent(base.metrics["exact_match"])) for the base Llama without images. "
            + "Text-only logits equal the base Llama's after every stage: \(summaries.allSatisfy { $0.textOnlyLogitsUnchanged == true } ? "yes" : "NO")."
    }

    var markdown: String {
        var lines = ["# VLMKit main job", "", headline, "", String(format: "Total time: %.0f s.", seconds), "",
                     "## Held-out exact match by question type", "",
                     "| model | overall | " + types.joined(separator: " | ") + " | overall, image blanked |",
                     "|---|---|" + types.map { _ in "---|" }.joined() + "---|"]
        for (name, metrics) in evaluations {
            lines.append("| \(name) | \(Self.percent(metrics["exact_match"])) | "
                         + types.map { Self.percent(metrics["exact_match/\($0)"]) }.joined(separator: " | ")
                         + " | \(Self.percent(metrics["exact_match_blank_images"])) |")
        }
        lines += ["", "## Stages", "", "| stage | kind | steps | loss first → last | tokens/s | seconds | text-only logits = base |",
                  "|---|---|---|---|---|---|---|"]
        for s in summaries {
            lines.append(String(format: "| %@ | %@ | %d | %.3f → %.3f | %.0f | %.0f | %@ |", s.stage, s.kind.rawValue, s.steps,
                                s.firstLoss ?? .nan, s.finalLoss ?? .nan, s.tokensPerSecond, s.seconds,
                                s.textOnlyLogitsUnchanged == true ? "yes, bit for bit" : "no"))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    var json: Data {
        let object: [String: Any] = [
            "seconds": seconds,
            "evaluations": evaluations.map { ["model": $0.name, "metrics": $0.metrics] },
            "stages": summaries.map { ["stage": $0.stage, "steps": $0.steps, "first_loss": $0.firstLoss ?? -1, "final_loss": $0.finalLoss ?? -1,
                                       "text_only_logits_unchanged": $0.textOnlyLogitsUnchanged ?? false] },
        ]
        return (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])) ?? Data()
    }
}

/// Runs a `vlm` command line in this process (the main job's steps are ordinary commands).
func runVLM(_ arguments: [String]) throws {
    var command = try VLM.parseAsRoot(arguments)
    try command.run()
}
