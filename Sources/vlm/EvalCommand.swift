import ArgumentParser
import Foundation
import Training

/// `vlm eval`: held-out loss and exact match of a model, with and without its images.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a model on held-out data: loss, and exact match where answers are given, with and without the images.",
        discussion: """
            Prints one line per metric, then the metrics as one JSON line. For a vision model every metric \
            is also computed with each image replaced by a black one (…_blank_images): when the two agree, \
            the model is not using the image. A text-only model reads the questions without their images \
            (the no-vision baseline). With --reward-model, the model's greedy answers to the question \
            records are also scored by that reward model (a reward stage's output), with their images: \
            held_out_reward is the mean, held_out_reward/correct and held_out_reward/wrong the means over \
            answers that match the reference and that do not. A preference file (TRL's prompt/chosen/rejected) \
            gives how often the model finds the chosen response more likely (preference/logps/accuracies) and \
            the responses' mean log-probabilities; with --reference (a DPO stage's input), TRL's implicit-reward \
            figures too (preference/rewards/accuracies, margins, log_ratio).
            """)

    @Option(help: "A model folder (mllama, vlmkit_token_stream, llava, or llama).")
    var model: String

    @Option(name: .customLong("data"), help: "A held-out file (questions JSONL, pairs, conversations, preference pairs); repeat for several.")
    var data: [String]

    @Option(help: "Read at most N samples (0: all).")
    var samples = 0

    @Option(help: "The longest answer generated for exact match.")
    var maxNewTokens = 16

    @Option(help: "A reward model folder (a reward stage's output) to score the model's answers with.")
    var rewardModel: String?

    @Option(help: "For preference files: the reference model of DPO's implicit rewards (the DPO stage's input).")
    var reference: String?

    @Option(help: "For preference files with --reference: DPO's β in the implicit reward β·(π − ρ).")
    var beta = 0.1

    func validate() throws {
        guard !data.isEmpty else { throw ValidationError("give at least one --data FILE") }
        guard samples >= 0, maxNewTokens > 0 else { throw ValidationError("--samples must be ≥ 0 and --max-new-tokens positive") }
        guard beta > 0, beta.isFinite else { throw ValidationError("--beta must be positive") }
    }

    func run() throws {
        let metrics = try self.metrics()
        for (key, value) in metrics.sorted(by: { $0.key < $1.key }) { print(String(format: "%-40@ %.4f", key, value)) }
        let json = metrics.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value.isFinite ? "\($0.value)" : "null")" }
        print("{" + json.joined(separator: ", ") + "}")
    }

    /// The metrics `run` prints.
    func metrics() throws -> [String: Double] {
        for file in data { try requireFile(file) }
        var metrics: [String: Double] = [:]
        do {
            let preferenceFiles = try data.filter { try Dataset(path: $0).format == .preference }
            let otherFiles = data.filter { !preferenceFiles.contains($0) }
            guard preferenceFiles.count <= 1 else {
                throw CommandFailure("give one preference file at a time (\(preferenceFiles.joined(separator: ", ")))")
            }
            if reference != nil && preferenceFiles.isEmpty { throw CommandFailure("--reference needs a preference file among --data") }
            if !otherFiles.isEmpty {
                metrics = try evaluateModel(directory: try modelFolder(model), datasets: otherFiles.map { URL(fileURLWithPath: $0) },
                                            maxSamples: samples, maxNewTokens: maxNewTokens,
                                            onSkip: { issue in FileHandle.standardError.write(Data("warning: skipped \(issue)\n".utf8)) })
            }
            for file in preferenceFiles {
                let figures = try evaluatePreferencePairs(directory: try modelFolder(model), dataset: URL(fileURLWithPath: file),
                                                          reference: try reference.map(modelFolder), beta: beta, maxSamples: samples)
                metrics.merge(figures) { $1 }
            }
            if let rewardModel {
                let folder = try modelFolder(rewardModel)
                let scored = try otherFiles.flatMap { file in
                    try scoreHeldOutAnswers(policy: try modelFolder(model), rewardModel: folder, dataset: URL(fileURLWithPath: file),
                                            maxSamples: samples, maxNewTokens: maxNewTokens)
                }
                guard !scored.isEmpty else { throw CommandFailure("--reward-model: \(data.joined(separator: ", ")) has no question records to answer") }
                metrics["held_out_reward"] = scored.meanReward
                metrics["held_out_reward/correct"] = scored.filter(\.correct).meanReward
                metrics["held_out_reward/wrong"] = scored.filter { !$0.correct }.meanReward
            }
        } catch let error as TrainingError { throw CommandFailure("\(error)") }
        return metrics
    }
}
