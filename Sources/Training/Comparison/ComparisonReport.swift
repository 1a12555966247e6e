import Foundation
import Models

/// The comparison's result: per arm (a design, and how its language model trained), the mean and
/// spread over seeds of every figure (``ComparisonRun/figures``), as Markdown and JSON.
public struct ComparisonReport: Sendable {
    /// A figure over seeds: the mean, the sample standard deviation (0 for one seed) and the values.
    public struct Statistic: Sendable, Equatable {
        public var mean: Double
        public var spread: Double
        public var values: [Double]

        public init(_ values: [Double]) {
            self.values = values
            mean = values.reduce(0, +) / Double(max(values.count, 1))
            let m = mean
            spread = values.count > 1 ? (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count - 1)).squareRoot() : 0
        }
    }

    public var runs: [ComparisonRun]
    /// The columns: each design with each language-model mode, in the order asked for.
    public var arms: [ComparisonArm]
    /// The designs, in the order asked for.
    public var designs: [AdapterLayout.Architecture] {
        arms.map(\.design).reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
    }
    /// The recipe stages every design trained.
    public var stages: [String]
    /// Wall-clock seconds of this invocation (finished runs reused cost nothing).
    public var seconds: Double

    public init(runs: [ComparisonRun], arms: [ComparisonArm], stages: [String], seconds: Double) {
        self.runs = runs
        self.arms = arms
        self.stages = stages
        self.seconds = seconds
    }

    /// Every figure of an arm over its seeds.
    public func statistics(of arm: ComparisonArm) -> [String: Statistic] {
        let figures = runs.filter { $0.arm == arm }.map(\.figures)
        let keys = Set(figures.flatMap(\.keys))
        return Dictionary(uniqueKeysWithValues: keys.map { key in (key, Statistic(figures.compactMap { $0[key] })) })
    }

    /// The question types measured, sorted.
    public var questionTypes: [String] {
        Set(runs.flatMap { $0.evaluation.keys.filter { $0.hasPrefix("exact_match/") } }).map { String($0.dropFirst("exact_match/".count)) }.sorted()
    }

    /// The image counts generation was timed with.
    public var timedImageCounts: [Int] { Array(Set(runs.flatMap { $0.generation.map(\.images) })).sorted() }

    public var seeds: Int { arms.map { arm in runs.filter { $0.arm == arm }.count }.min() ?? 0 }

    /// The table's rows: a label, the figure's key, and how to print it.
    var rows: [(label: String, key: String, format: (Double) -> String)] {
        let percent: (Double) -> String = { String(format: "%.1f %%", 100 * $0) }
        let plain: (String) -> (Double) -> String = { f in { String(format: f, $0) } }
        var rows: [(String, String, (Double) -> String)] = [("exact match, overall", "exact_match", percent)]
        rows += questionTypes.map { ("exact match, \($0)", "exact_match/\($0)", percent) }
        rows += [("exact match, image blanked", "exact_match_blank_images", percent),
                 ("caption accuracy (held-out descriptions)", "caption_accuracy", percent),
                 ("caption object recall", "caption_recall", percent),
                 ("held-out loss", "held_out_loss", plain("%.4f")),
                 ("held-out loss, image blanked", "held_out_loss_blank_images", plain("%.4f")),
                 ("text-only KL to the base Llama (nats/token)", "text_kl", plain("%.3g")),
                 ("text-only perplexity (base Llama's)", "text_perplexity", plain("%.4f")),
                 ("trainable parameters", "trainable_parameters", plain("%.0f")),
                 ("text positions per image", "positions_per_image", plain("%.0f")),
                 ("training images/s", "training_images_per_s", plain("%.1f")),
                 ("training tokens/s (all positions)", "training_tokens_per_s", plain("%.0f"))]
        for count in timedImageCounts {
            rows.append(("prefill ms, \(count) image\(count == 1 ? "" : "s") (prompt tokens)", "prefill_ms/\(count)", plain("%.1f")))
            rows.append(("decode tokens/s, \(count) image\(count == 1 ? "" : "s")", "decode_tokens_per_s/\(count)", plain("%.1f")))
        }
        rows.append(("peak memory MB", "peak_memory_mb", plain("%.0f")))
        return rows
    }

    /// "mean ± spread" (the spread only with more than one seed).
    func cell(_ statistic: Statistic?, _ format: (Double) -> String) -> String {
        guard let statistic, !statistic.values.isEmpty else { return "–" }
        return statistic.values.count > 1 ? "\(format(statistic.mean)) ± \(format(statistic.spread))" : format(statistic.mean)
    }

    /// One row's cells, one per design; prefill cells also give the prompt's length in tokens.
    func cells(_ row: (label: String, key: String, format: (Double) -> String), _ statistics: [[String: Statistic]]) -> [String] {
        statistics.map { figures in
            let text = cell(figures[row.key], row.format)
            guard row.key.hasPrefix("prefill_ms/"), let tokens = figures["prompt_tokens/" + row.key.dropFirst("prefill_ms/".count)] else { return text }
            return "\(text) (\(Int(tokens.mean)))"
        }
    }

    public var markdown: String {
        let statistics = arms.map { self.statistics(of: $0) }
        let trainsLanguageModel = arms.contains { $0.languageModel != .frozen }
        var lines = ["# Fusion designs compared", "",
                     "Each design trained the stages \(stages.joined(separator: ", ")) of one recipe on the same data, steps and seeds, "
                     + "from the same base Llama and the same image encoder initialisation; \(seeds) seed\(seeds == 1 ? "" : "s") each "
                     + "(mean ± sample standard deviation over seeds). "
                     + (trainsLanguageModel ? "Columns marked LoRA LM (full LM) also trained the language model with LoRA adapters (in full); the others kept it frozen. " : "")
                     + String(format: "Training steps: %.0f s in all runs; this invocation: %.0f s (finished runs are reused).",
                              runs.map(\.trainingSeconds).reduce(0, +), seconds), "",
                     "| | " + arms.map(\.description).joined(separator: " | ") + " |",
                     "|---|" + arms.map { _ in "---|" }.joined()]
        for row in rows {
            var label = row.label
            if row.key == "text_perplexity", let base = statistics.first?["base_text_perplexity"] {
                label += String(format: " (base: %.4f)", base.mean)
            }
            let cells = self.cells(row, statistics)
            lines.append("| \(label) | " + cells.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `comparison.json`: the statistics per design, then every run (numbers round-trip exactly).
    public var json: Data {
        let file = File(stages: stages, seconds: seconds, seeds: seeds, designs: arms.map { arm in
            File.Design(design: arm.design, languageModel: arm.languageModel == .frozen ? nil : arm.languageModel,
                        figures: statistics(of: arm).mapValues { File.Figure(mean: $0.mean, spread: $0.spread, values: $0.values) })
        }, runs: runs)
        return (try? ComparisonRun.encoder().encode(file)) ?? Data()
    }

    /// The layout of `comparison.json`.
    struct File: Codable {
        struct Figure: Codable { var mean: Double, spread: Double, values: [Double] }
        struct Design: Codable {
            var design: AdapterLayout.Architecture
            var languageModel: LanguageModelTraining.Mode?
            var figures: [String: Figure]
            enum CodingKeys: String, CodingKey { case design, languageModel = "language_model", figures }
        }
        var stages: [String]
        var seconds: Double
        var seeds: Int
        var designs: [Design]
        var runs: [ComparisonRun]
    }

    /// Reads `comparison.json` back (the runs; the statistics are recomputed from them).
    public static func load(from url: URL) throws -> ComparisonReport {
        let file: File
        do { file = try ComparisonRun.decoder().decode(File.self, from: Data(contentsOf: url)) } catch {
            throw TrainingError("\(url.path): not a comparison.json (\(error))")
        }
        return ComparisonReport(runs: file.runs, arms: file.designs.map { ComparisonArm(design: $0.design, languageModel: $0.languageModel ?? .frozen) },
                                stages: file.stages, seconds: file.seconds)
    }
}
