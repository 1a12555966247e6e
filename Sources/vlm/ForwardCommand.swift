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
            (1 = real token, 0 = padding; left or right). For mllama checkpoints it may also hold the \
            processor's pixel_values [B, N, tiles, 3, H, W], aspect_ratio_ids [B, N], \
            aspect_ratio_mask [B, N, tiles] and cross_attention_mask [B, T, N, tiles]. OUT receives \
            logits [B, T, V] (float32).
            """)

    @Option(help: "A Hugging Face checkpoint directory (config.json + safetensors).")
    var model: String

    @Option(help: "Input tensors (safetensors).")
    var inputs: String

    @Option(help: "Where to write the logits (safetensors; written atomically).")
    var out: String

    @Option(help: "mllama only: 'meta' (text that sees no image gets no cross-attention, as Meta's reference) or 'huggingface' (transformers 4.45.2: only the MLP output is zeroed).")
    var crossAttentionMasking: MaskingOption = .meta

    enum MaskingOption: String, ExpressibleByArgument, CaseIterable {
        case meta, huggingface
    }

    func run() throws {
        let directory = URL(fileURLWithPath: model)
        let config = try ModelConfig.load(from: directory.appendingPathComponent("config.json"))
        let tensors = try SafetensorsFile(path: inputs)
        func optional(_ name: String) throws -> Tensor? { tensors.contains(name) ? try tensors.tensor(name) : nil }
        guard let ids = try optional("input_ids") else {
            throw CommandFailure("\(inputs): no tensor named 'input_ids' (found \(tensors.names.joined(separator: ", ")))")
        }
        guard ids.rank == 2, ids.dtype == .int64 || ids.dtype == .int32 else {
            throw CommandFailure("\(inputs): input_ids must be int64 or int32 [B, T], got \(ids.dtype) \(ids.shape)")
        }
        let mask = try optional("attention_mask")
        if let mask, mask.shape != ids.shape {
            throw CommandFailure("\(inputs): attention_mask \(mask.shape) must match input_ids \(ids.shape)")
        }
        let logits: Tensor
        switch config {
        case .llama:
            let llama = try LlamaForCausalLM.load(directory: directory)
            try validateIds(ids, vocabulary: llama.config.vocabSize)
            logits = withNoGrad { llama(ids, attentionMask: mask) }
        case .mllama(let mllamaConfig):
            let mllama = try MllamaForConditionalGeneration.load(directory: directory)
            mllama.crossAttentionMasking = crossAttentionMasking == .meta ? .meta : .huggingface
            // The embedding table has 8 rows beyond the text vocabulary (the image token among them).
            try validateIds(ids, vocabulary: mllamaConfig.textConfig.llama.vocabSize + 8)
            let pixels = try optional("pixel_values")
            if pixels != nil, try optional("aspect_ratio_ids") == nil {
                throw CommandFailure("\(inputs): pixel_values needs aspect_ratio_ids beside it")
            }
            logits = try withNoGrad {
                mllama(inputIds: ids, attentionMask: mask, pixelValues: pixels,
                       aspectRatioIds: try optional("aspect_ratio_ids"), aspectRatioMask: try optional("aspect_ratio_mask"),
                       crossAttentionMask: try optional("cross_attention_mask"))
            }
        default:
            throw CommandFailure("\(model): model_type '\(config.modelType)' is not supported by `vlm forward` yet")
        }
        try writeSafetensors(tensors: [("logits", logits)], to: URL(fileURLWithPath: out))
        print("wrote logits \(logits.shape) to \(out)")
    }

    private func validateIds(_ ids: Tensor, vocabulary: Int) throws {
        if let bad = ids.integers().first(where: { $0 < 0 || $0 >= vocabulary }) {
            throw CommandFailure("\(inputs): input_ids contains \(bad), outside the vocabulary of \(vocabulary)")
        }
    }
}
