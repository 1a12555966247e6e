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
            (1 = real token, 0 = padding; left or right) and position_ids [B, T] (which must number \
            the real tokens 0, 1, 2…, as positions always follow the mask). Any other tensor is an error. For mllama checkpoints it may also hold the \
            processor's pixel_values [B, N, tiles, 3, H, W], aspect_ratio_ids [B, N], \
            aspect_ratio_mask [B, N, tiles] and cross_attention_mask [B, T, N, tiles]; for llava \
            checkpoints, pixel_values [I, 3, H, W] (every image of the batch, in the order of their \
            image tokens, which input_ids holds already expanded, as LlavaProcessor makes them); for \
            vlmkit_token_stream checkpoints, pixel_values [B, N, tiles, 3, H, W], aspect_ratio_ids [B, N] \
            and aspect_ratio_mask [B, N, tiles] as for mllama, with each <|image|> of input_ids already \
            expanded to the model's image tokens per image (`vlm preprocess --prompt` writes them so). \
            OUT receives logits [B, T, V] (float32).
            """)

    @Option(help: "A Hugging Face checkpoint directory (config.json + safetensors).")
    var model: String

    @Option(help: "Input tensors (safetensors; '-' reads standard input).")
    var inputs: String

    @Option(help: "Where to write the logits (safetensors; written atomically, through links; '-' is standard output).")
    var out: String

    @Option(help: "mllama only: 'meta' (text that sees no image gets no cross-attention, as Meta's reference) or 'huggingface' (transformers 4.45.2: only the MLP output is zeroed).")
    var crossAttentionMasking: MaskingOption = .meta

    enum MaskingOption: String, ExpressibleByArgument, CaseIterable {
        case meta, huggingface
    }

    func run() throws {
        let directory = try modelFolder(model)
        let config = try ModelConfig.load(from: directory.appendingPathComponent("config.json"))
        let tensors = try openSafetensorsInput(inputs)
        let known = switch config {
        case .llama: Self.textInputs
        case .mllama: Self.mllamaInputs
        case .llava: Self.llavaInputs
        case .tokenStream: Self.tokenStreamInputs
        }
        let unknown = tensors.names.filter { !known.contains($0) }
        guard unknown.isEmpty else {
            throw CommandFailure("\(inputs): unknown tensor\(unknown.count == 1 ? "" : "s") \(unknown.map { "'\($0)'" }.joined(separator: ", ")) "
                                 + "(a \(config.modelType) model reads \(known.joined(separator: ", ")))")
        }
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
        if let positions = try optional("position_ids") { try checkPositions(positions, ids: ids, mask: mask) }
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
            let images = try MllamaImageInputs(
                pixelValues: try optional("pixel_values"), aspectRatioIds: try optional("aspect_ratio_ids"),
                aspectRatioMask: try optional("aspect_ratio_mask"), crossAttentionMask: try optional("cross_attention_mask"),
                inputIds: ids, vision: mllamaConfig.visionConfig, source: inputs)
            logits = withNoGrad {
                mllama(inputIds: ids, attentionMask: mask, pixelValues: images.pixelValues,
                       aspectRatioIds: images.aspectRatioIds, aspectRatioMask: images.aspectRatioMask,
                       crossAttentionMask: images.crossAttentionMask)
            }
        case .llava(let llavaConfig):
            let llava = try LlavaForConditionalGeneration.load(directory: directory)
            try validateIds(ids, vocabulary: llavaConfig.textConfig.vocabSize)
            let pixels = try optional("pixel_values")
            try checkLlavaImages(pixels, inputIds: ids, model: llava, source: inputs)
            logits = withNoGrad { llava(inputIds: ids, attentionMask: mask, pixelValues: pixels) }
        case .tokenStream(let streamConfig):
            let stream = try TokenStreamModel.load(directory: directory)
            try checkTokenStreamIds(ids.integers(), config: streamConfig, source: "\(inputs): input_ids")
            let images = try MllamaImageInputs(
                pixelValues: try optional("pixel_values"), aspectRatioIds: try optional("aspect_ratio_ids"),
                aspectRatioMask: try optional("aspect_ratio_mask"), crossAttentionMask: nil,
                inputIds: ids, vision: streamConfig.visionConfig, source: inputs)
            try checkTokenStreamImages(images, inputIds: ids, config: streamConfig, source: inputs)
            logits = withNoGrad {
                stream.logits(hiddenStates: stream.hiddenStates(
                    inputIds: ids, attentionMask: mask, pixelValues: images.pixelValues,
                    aspectRatioIds: images.aspectRatioIds, aspectRatioMask: images.aspectRatioMask))
            }
        }
        try writeSafetensors(tensors: [("logits", logits)], to: outputURL(out))
        report("wrote logits \(logits.shape) to \(out)", dataPath: out)
    }

    /// The tensors an inputs file may hold.
    static let textInputs = ["input_ids", "attention_mask", "position_ids"]
    static let mllamaInputs = textInputs + ["pixel_values", "aspect_ratio_ids", "aspect_ratio_mask", "cross_attention_mask"]
    static let llavaInputs = textInputs + ["pixel_values"]
    static let tokenStreamInputs = textInputs + ["pixel_values", "aspect_ratio_ids", "aspect_ratio_mask"]

    /// Positions are derived from the attention mask (each real token's position is the number of
    /// real tokens before it); a `position_ids` tensor is accepted when it says the same at every
    /// real token, as transformers' inputs do, and refused otherwise rather than ignored.
    private func checkPositions(_ positions: Tensor, ids: Tensor, mask: Tensor?) throws {
        guard positions.shape == ids.shape, positions.dtype == .int64 || positions.dtype == .int32 else {
            throw CommandFailure("\(inputs): position_ids must be int64 or int32 \(ids.shape) like input_ids, got \(positions.dtype) \(positions.shape)")
        }
        let (b, t) = (ids.shape[0], ids.shape[1])
        let given = positions.integers(), real = mask?.integers() ?? Array(repeating: 1, count: b * t)
        for row in 0..<b {
            var expected = 0
            for column in 0..<t where real[row * t + column] != 0 {
                guard given[row * t + column] == expected else {
                    throw CommandFailure("\(inputs): position_ids[\(row), \(column)] is \(given[row * t + column]), but positions follow "
                                         + "the attention mask here (\(expected)); other positions are not supported")
                }
                expected += 1
            }
        }
    }

    private func validateIds(_ ids: Tensor, vocabulary: Int) throws {
        if let bad = ids.integers().first(where: { $0 < 0 || $0 >= vocabulary }) {
            throw CommandFailure("\(inputs): input_ids contains \(bad), outside the vocabulary of \(vocabulary)")
        }
    }
}
