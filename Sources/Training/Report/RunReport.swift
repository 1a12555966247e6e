import Foundation

/// What the main job (`vlm run`) did, as Markdown, JSON and one self-contained HTML page: held-out
/// exact match by question type for the base Llama and after every stage (with the images and with
/// them blanked), what each stage did, its loss curve, and sample pictures with every model's answers.
public struct RunReport {
    /// One model's held-out metrics (`exact_match`, `exact_match/TYPE`, `…_blank_images`, `loss`).
    public struct Evaluation {
        public var name: String
        public var metrics: [String: Double]
        public init(name: String, metrics: [String: Double]) {
            self.name = name
            self.metrics = metrics
        }
    }

    /// A held-out question shown with its picture and each model's answer.
    public struct Sample {
        public var id: String
        /// The picture as PNG (or JPEG) bytes, embedded in the page.
        public var image: Data
        public var question: String
        public var reference: String
        public var type: String
        /// Each model's answer, in the order of ``RunReport/evaluations``.
        public var answers: [(model: String, answer: String)]
        public init(id: String, image: Data, question: String, reference: String, type: String, answers: [(model: String, answer: String)]) {
            self.id = id
            self.image = image
            self.question = question
            self.reference = reference
            self.type = type
            self.answers = answers
        }
    }

    public var evaluations: [Evaluation]
    public var summaries: [StageSummary]
    /// Each stage's training loss by step (from its `metrics.jsonl`).
    public var lossCurves: [(stage: String, points: [(step: Int, loss: Double)])]
    public var samples: [Sample]
    /// Reward distributions to draw as histograms (e.g. rejection sampling's candidates, all and kept).
    public var rewardDistributions: [(title: String, series: [(name: String, values: [Double])])] = []
    /// Each post-training policy against the one it was trained from, on the same held-out questions.
    public var pairedChanges: [PairedChange] = []
    /// The fusion comparison (`vlm compare`) the job ran after its stages, if any.
    public var comparison: ComparisonReport? = nil
    public var seconds: Double
    /// Where the job ran (CPU, cores), printed under the title.
    public var machine: String

    public init(evaluations: [Evaluation], summaries: [StageSummary], lossCurves: [(stage: String, points: [(step: Int, loss: Double)])] = [],
                samples: [Sample] = [], seconds: Double, machine: String = "") {
        self.evaluations = evaluations
        self.summaries = summaries
        self.lossCurves = lossCurves
        self.samples = samples
        self.seconds = seconds
        self.machine = machine
    }

    /// One sentence per `encoder` stage: its held-out patch accuracy, overall and per label field.
    var encoderSentences: [String] {
        summaries.filter { $0.kind == .encoder }.compactMap { s in
            guard let mean = s.evaluation["patch_accuracy"] else { return nil }
            let prefix = "patch_accuracy/"
            let fields = s.evaluation.keys.filter { $0.hasPrefix(prefix) }.sorted()
                .map { "\($0.dropFirst(prefix.count)) \(Self.percent(s.evaluation[$0]))" }
            return "\(s.stage), after \(s.steps) steps: on held-out pictures the encoder names \(Self.percent(mean)) of the labels "
                + "of the patches objects cover (\(fields.joined(separator: ", "))); the heads that read them are dropped after the stage."
        }
    }

    /// The question types present in any evaluation, sorted.
    public var questionTypes: [String] {
        Set(evaluations.flatMap { $0.metrics.keys.filter { $0.hasPrefix("exact_match/") } })
            .map { String($0.dropFirst("exact_match/".count)) }.sorted()
    }

    /// Whether every stage's output gave the base Llama's text-only logits bit for bit.
    public var textOnlyLogitsUnchanged: Bool { !summaries.isEmpty && summaries.allSatisfy { $0.textOnlyLogitsUnchanged == true } }

    static func percent(_ value: Double?) -> String { value.map { String(format: "%.1f %%", 100 * $0) } ?? "–" }

    /// One sentence: final exact match with and without the image, the base Llama's, and the drop-in check.
    public var headline: String {
        guard let final = evaluations.last, let base = evaluations.first else { return "" }
        return "Held-out exact match: \(Self.percent(final.metrics["exact_match"])) with the image, "
            + "\(Self.percent(final.metrics["exact_match_blank_images"])) with the image blanked, "
            + "\(Self.percent(base.metrics["exact_match"])) for the base Llama without images. "
            + "Text-only logits equal the base Llama's after every stage: \(textOnlyLogitsUnchanged ? "yes" : "NO")."
    }

    /// This invocation's time and the stages' training time as recorded when each ran: a rerun
    /// reuses every finished step, so its own time alone would understate the job.
    var timeLine: String {
        let training = summaries.reduce(0) { $0 + $1.seconds }
        return String(format: "This run of vlm run: %.0f s; the vision recipe's stages trained for %.0f s when they ran.", seconds, training)
    }

    public var markdown: String {
        let types = questionTypes
        var lines = ["# VLMKit main job", "", headline, "", timeLine + " " + machine, "",
                     "## Held-out exact match by question type", "",
                     "| model | overall | " + types.joined(separator: " | ") + " | overall, image blanked |",
                     "|---|---|" + types.map { _ in "---|" }.joined() + "---|"]
        for evaluation in evaluations {
            let metrics = evaluation.metrics
            lines.append("| \(evaluation.name) | \(Self.percent(metrics["exact_match"])) | "
                         + types.map { Self.percent(metrics["exact_match/\($0)"]) }.joined(separator: " | ")
                         + " | \(Self.percent(metrics["exact_match_blank_images"])) |")
        }
        if evaluations.contains(where: { $0.metrics["caption_accuracy"] != nil }) {
            lines += ["", "## Held-out scene descriptions", "",
                      "Asked in chat (\"Describe the image in detail.\"), and as a caption: the image alone, continued as the "
                      + "pretraining pairs are laid out (what the pretraining stages learn).", "",
                      "| model | attribute accuracy (chat) | objects mentioned (chat) | attribute accuracy (caption) | objects mentioned (caption) | attribute accuracy (caption, image blanked) |",
                      "|---|---|---|---|---|---|"]
            for evaluation in evaluations {
                let metrics = evaluation.metrics
                lines.append("| \(evaluation.name) | \(Self.percent(metrics["caption_accuracy"])) | \(Self.percent(metrics["caption_recall"])) | "
                             + "\(Self.percent(metrics["caption_layout_accuracy"])) | \(Self.percent(metrics["caption_layout_recall"])) | "
                             + "\(Self.percent(metrics["caption_layout_accuracy_blank_images"])) |")
            }
        }
        lines += ["", "## Stages", "", "| stage | kind | steps | loss first → last | tokens/s | seconds | text-only logits = base |",
                  "|---|---|---|---|---|---|---|"]
        for s in summaries {
            lines.append(String(format: "| %@ | %@ | %d | %.3f → %.3f | %.0f | %.0f | %@ |", s.stage, s.kind.rawValue, s.steps,
                                s.firstLoss ?? .nan, s.finalLoss ?? .nan, s.tokensPerSecond, s.seconds,
                                s.textOnlyLogitsUnchanged == true ? "yes, bit for bit" : "no"))
        }
        if !encoderSentences.isEmpty {
            lines += ["", "## Image encoder pretraining", ""] + encoderSentences.map { "- " + $0 }
        }
        if !rewardDistributions.isEmpty {
            lines += ["", "## Rewards", ""]
            for distribution in rewardDistributions {
                lines.append("- \(distribution.title): " + Self.rewardMeans(distribution.series).joined(separator: "; ") + ".")
            }
        }
        if !pairedChanges.isEmpty {
            lines += ["", "## Post-training, question by question", "", Self.pairedChangesNote, ""]
            lines += pairedChanges.map { "- " + $0.sentence + "." }
        }
        if let comparison {
            lines += ["", "## Fusion designs compared (vlm compare)", ""]
            lines += comparison.markdown.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(2).map(String.init)
        }
        if !samples.isEmpty {
            lines += ["", "## Sample answers", "", "| question | reference | " + evaluations.map(\.name).joined(separator: " | ") + " |",
                      "|---|---|" + evaluations.map { _ in "---|" }.joined()]
            for sample in samples {
                lines.append("| \(sample.question) | \(sample.reference) | " + sample.answers.map(\.answer).joined(separator: " | ") + " |")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static let pairedChangesNote = "Each policy against the one it was trained from, on the same held-out questions: exact match "
        + "gained and lost with an exact McNemar test (within noise: p ≥ 0.05), and the mean change of the reward model's score "
        + "± its standard error (within noise: under two standard errors)."

    /// "name: mean M over N" for each series of a reward distribution.
    static func rewardMeans(_ series: [(name: String, values: [Double])]) -> [String] {
        series.map { entry in
            String(format: "%@: mean %.3f over %d", entry.name, entry.values.reduce(0, +) / Double(max(entry.values.count, 1)), entry.values.count)
        }
    }

    public var json: Data {
        var object: [String: Any] = [
            "seconds": seconds,
            "machine": machine,
            "text_only_logits_unchanged": textOnlyLogitsUnchanged,
            "evaluations": evaluations.map { ["model": $0.name, "metrics": $0.metrics] },
            "stages": summaries.map { ["stage": $0.stage, "kind": $0.kind.rawValue, "steps": $0.steps, "first_loss": $0.firstLoss ?? -1,
                                       "final_loss": $0.finalLoss ?? -1, "seconds": $0.seconds, "tokens_per_s": $0.tokensPerSecond,
                                       "text_only_logits_unchanged": $0.textOnlyLogitsUnchanged ?? false,
                                       "evaluation": $0.evaluation] },
            "samples": samples.map { sample -> [String: Any] in
                ["id": sample.id, "question": sample.question, "reference": sample.reference, "type": sample.type,
                 "answers": Dictionary(sample.answers.map { ($0.model, $0.answer) }, uniquingKeysWith: { a, _ in a })]
            },
        ]
        if !pairedChanges.isEmpty { object["paired_changes"] = pairedChanges.map(\.json) }
        if let comparison { object["comparison"] = try? JSONSerialization.jsonObject(with: comparison.json) }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])) ?? Data()
    }
}
