import ArgumentParser
import Checkpoint
import Foundation
import Models
import TensorCore

/// `vlm forward`: logits for inputs read from a safetensors file, for checking against a reference.
struct ForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Run a model on inputs from a safetensors file and write its logits.",
        discussion: """
            IN holds input_ids [B, T] (int64 or int32) and optionally attention_mask [B, T] \
            (1 = real token, 0 = padding; left or right). OUT receives logits [B, T, V] (float32).
            """)

    @Option(help: "A Hugging Face checkpoint directory (config.json + safetensors).")
    var model: String

    @Option(help: "Input tensors (safetensors).")
    var inputs: String

    @Option(help: "Where to write the logits (safetensors; written atomically).")
    var out: String

    func run() throws {
        let directory = URL(fileURLWithPath: model)
        let config = try ModelConfig.load(from: directory.appendingPathComponent("config.json"))
        let tensors = try SafetensorsFile(path: inputs)
        guard tensors.contains("input_ids") else {
            throw ValidationError("\(inputs): no tensor named 'input_ids' (found \(tensors.names.joined(separator: ", ")))")
        }
        let ids = try tensors.tensor("input_ids")
        let mask = tensors.contains("attention_mask") ? try tensors.tensor("attention_mask") : nil
        guard ids.rank == 2, ids.dtype == .int64 || ids.dtype == .int32 else {
            throw ValidationError("\(inputs): input_ids must be int64 or int32 [B, T], got \(ids.dtype) \(ids.shape)")
        }
        if let mask, mask.shape != ids.shape {
            throw ValidationError("\(inputs): attention_mask \(mask.shape) must match input_ids \(ids.shape)")
        }
        let logits: Tensor
        switch config {
        case .llama:
            let llama = try LlamaForCausalLM.load(directory: directory)
            try validateIds(ids, vocabulary: llama.config.vocabSize)
            logits = withNoGrad { llama(ids, attentionMask: mask) }
        default:
            throw ValidationError("\(model): model_type '\(config.modelType)' is not supported by `vlm forward` yet")
        }
        try writeSafetensors(tensors: [("logits", logits)], to: URL(fileURLWithPath: out))
        print("wrote logits \(logits.shape) to \(out)")
    }

    private func validateIds(_ ids: Tensor, vocabulary: Int) throws {
        if let bad = ids.integers().first(where: { $0 < 0 || $0 >= vocabulary }) {
            throw ValidationError("\(inputs): input_ids contains \(bad), outside the vocabulary of \(vocabulary)")
        }
    }
}
