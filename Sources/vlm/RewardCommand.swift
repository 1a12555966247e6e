import ArgumentParser
import Checkpoint
import Foundation
import Training

/// `vlm reward`: scores (image, prompt, response) triples with a trained vision reward model.
struct RewardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reward",
        abstract: "Score responses with a vision reward model (the output of a reward stage of vlm train).",
        discussion: """
            Reads a preference file (TRL's prompt/chosen/rejected JSONL: every response is scored) or a \
            conversation or question file (the last assistant turn or the answer is scored) and writes one \
            JSON line per record: {"id": …, "rewards": {"chosen": …, "rejected": …}} or {"id": …, \
            "rewards": {"response": …}}. For preference files it also prints the pairwise accuracy to \
            standard error. See Docs/training.md.
            """)

    @Option(help: "A reward model folder (RUN/STAGE/model of a reward stage: an mllama checkpoint with reward_head.safetensors).")
    var model: String

    @Option(help: "The records to score (JSONL or LLaVA JSON).")
    var data: String

    @Option(help: "Write the JSON lines to this file instead of standard output.")
    var out: String?

    @Flag(help: "Replace every image by a black one (does the reward model look at the image?).")
    var blankImages = false

    func run() throws {
        try requireFile(data)
        let scores: [RewardScore]
        do {
            scores = try scoreResponses(directory: try modelFolder(model), data: URL(fileURLWithPath: data), blankImages: blankImages,
                                        onSkip: { FileHandle.standardError.write(Data("skipped \($0)\n".utf8)) })
        } catch let error as TrainingError { throw CommandFailure("\(error)") }
        guard !scores.isEmpty else { throw CommandFailure("\(data): no record could be scored (each is named above)") }
        var lines = ""
        for score in scores {
            let object: [String: Any] = ["id": score.id, "rewards": score.rewards]
            lines += String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self) + "\n"
        }
        if let out { try AtomicFile.write(Data(lines.utf8), to: outputURL(out)) } else { print(lines, terminator: "") }
        let pairs = scores.compactMap { score in score.rewards["chosen"].flatMap { c in score.rewards["rejected"].map { (c, $0) } } }
        if !pairs.isEmpty {
            let right = pairs.filter { $0.0 > $0.1 }.count
            FileHandle.standardError.write(Data(String(format: "pairwise accuracy %.4f (%d of %d pairs)\n", Double(right) / Double(pairs.count), right, pairs.count).utf8))
        }
    }
}
