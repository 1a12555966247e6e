import Checkpoint
import Foundation
import Layers
import TensorCore

extension MllamaForConditionalGeneration {
    /// Checkpoint name prefixes of the layout transformers ≥ 4.52 writes, and the published
    /// (4.45.2) prefixes they map to. Names are rewritten by the first matching prefix; the
    /// published layout is the model's own and maps to itself.
    public static let checkpointPrefixes: [(from: String, to: String)] = [
        ("model.language_model.", "language_model.model."),
        ("model.vision_model.", "vision_model."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("lm_head.", "language_model.lm_head."),
    ]

    /// The embedding table's name in checkpoints: one `[V + 8, D]` tensor.
    static let embeddingTableName = "language_model.model.embed_tokens.weight"
    /// The model's parameter for the 8 rows after the text vocabulary.
    static let extraRowsName = "language_model.model.embed_tokens.extra_weight"

    /// A checkpoint name in the published layout.
    public static func publishedName(_ name: String) -> String {
        for (from, to) in checkpointPrefixes where name.hasPrefix(from) { return to + name.dropFirst(from.count) }
        return name
    }

    /// Loads a Hugging Face Mllama checkpoint directory (`config.json` and `model.safetensors` or
    /// shards), in the published 4.45.2 layout or the newer `model.language_model.*` one.
    ///
    /// Weights are memory-mapped and keep their stored dtype (bf16 stays bf16); the model is
    /// frozen (see ``setTrainable(_:)``). Loading is strict: a missing, unexpected or mis-shaped
    /// tensor is an error listing the names. The `[V + 8, D]` embedding table is split into the
    /// text rows (`embed_tokens.weight`) and the extra rows (`embed_tokens.extra_weight`), both
    /// views of the mapped table.
    public static func load(directory: URL) throws -> MllamaForConditionalGeneration {
        let config = try MllamaConfig.load(from: directory.appendingPathComponent("config.json"))
        let model = MllamaForConditionalGeneration(config: config, factory: ParameterFactory(.uninitialized))
        let checkpoint = try SafetensorsCheckpoint(path: try LlamaForCausalLM.weightsPath(in: directory))
        var tensors: [String: Tensor] = [:]
        for name in checkpoint.names where !name.hasSuffix("rotary_emb.inv_freq") {
            tensors[publishedName(name)] = try checkpoint.tensor(name)
        }
        if let table = tensors[embeddingTableName] {
            let v = config.textConfig.llama.vocabSize
            guard table.rank == 2, table.shape[0] == v + MllamaTokenEmbedding.extraRowCount else {
                throw CheckpointError(file: directory.path, reason: "\(embeddingTableName) must have vocab_size + "
                    + "\(MllamaTokenEmbedding.extraRowCount) = \(v + MllamaTokenEmbedding.extraRowCount) rows, found \(table.shape)")
            }
            tensors[embeddingTableName] = table.slice(axis: 0, 0..<v)
            tensors[extraRowsName] = table.slice(axis: 0, v..<(v + MllamaTokenEmbedding.extraRowCount))
        }
        try model.loadParameters(tensors, source: directory.path)
        return model
    }

    /// The parameters under their published checkpoint names, with the embedding table joined
    /// back into one `[V + 8, D]` tensor (the extra rows converted to the text rows' dtype).
    public func checkpointTensors() -> [String: Tensor] {
        var tensors = Dictionary(uniqueKeysWithValues: parameters().map { ($0.name, $0.tensor.detached()) })
        let text = tensors[Self.embeddingTableName]!, extra = tensors.removeValue(forKey: Self.extraRowsName)!
        tensors[Self.embeddingTableName] = withNoGrad {
            Tensor.concatenate([text, extra.dtype == text.dtype ? extra : extra.converted(to: text.dtype)], axis: 0)
        }
        return tensors
    }

    /// Writes `config.json` and `model.safetensors` (published 4.45.2 names, each tensor in its
    /// dtype) into `directory`, creating it; each file is written atomically.
    public func save(to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try writeSafetensors(tensors: checkpointTensors(), metadata: ["format": "pt"],
                             to: directory.appendingPathComponent("model.safetensors"))
        try AtomicFile.write(try config.jsonData(), to: directory.appendingPathComponent("config.json"))
    }
}
