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
            (the no-vision baseline).
            """)

    @Option(help: "A model folder (mllama, vlmkit_token_stream, llava, or llama).")
    var model: String

    @Option(name: .customLong("data"), help: "A held-out file (questions JSONL, pairs, conversations); repeat for several.")
    var data: [String]

    @Option(help: "Read at most N samples (0: all).")
    var samples = 0

    @Option(help: "The longest answer generated for exact match.")
    var maxNewTokens = 16

    func validate() throws {
        guard !data.isEmpty else { throw ValidationError("give at least one --data FILE") }
        guard samples >= 0, maxNewTokens > 0 else { throw ValidationError("--samples must be ≥ 0 and --max-new-tokens positive") }
    }

    func run() throws {
        for file in data { try requireFile(file) }
        let metrics: [String: Double]
        do {
            metrics = try evaluateModel(directory: try modelFolder(model), datasets: data.map { URL(fileURLWithPath: $0) },
                                        maxSamples: samples, maxNewTokens: maxNewTokens)
        } catch let error as TrainingError { throw CommandFailure("\(error)") }
        for (key, value) in metrics.sorted(by: { $0.key < $1.key }) { print(String(format: "%-40@ %.4f", key, value)) }
        let json = metrics.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value.isFinite ? "\($0.value)" : "null")" }
        print("{" + json.joined(separator: ", ") + "}")
    }
}
