import Checkpoint
import Foundation
import Layers
import TensorCore

/// Turns a Llama 3.1 checkpoint into an mllama checkpoint with fresh adapters: the drop-in swap.
///
/// - The text model's layers keep their weights (not a bit changes) and move to their fused
///   indices; its embedding table, final norm and head keep theirs (a tied head is written out as
///   its own copy of the embedding, which computes the same logits).
/// - Fresh cross-attention layers go where `layout` says, with both gates at the layout's
///   `gate_init` (0 by default, as Meta's: the new model's output then equals the text model's with
///   or without images until the gates are trained; without images it does whatever the gates).
/// - A fresh image encoder and projector of the layout's shape, initialised as transformers does.
/// - The 8 extra embedding rows (`<|image|>` is the first, id = the text vocabulary size) start at
///   the mean of the text embeddings — a neutral point for a token no text has used.
///
/// This writes `model.safetensors`, `config.json` and `preprocessor_config.json`, and copies the text
/// model's ``companionFiles`` as they are. Those copies are the text model's: the files a complete
/// vision checkpoint needs (`tokenizer.json` with `<|image|>`, the processor class and the vision
/// chat template) come from `Processing`'s `VisionCheckpointFiles`, which replaces them
/// (`vlm adapters init` does both).
public enum AdapterInitialization {
    /// The files copied from the text model when present.
    public static let companionFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "generation_config.json", "tokenizer.model", "tokenizer.json.zst"]

    /// The configuration ``initialize(textModel:layout:output:seed:)`` writes for this text model
    /// and layout, without building anything.
    public static func configuration(textModel: URL, layout: AdapterLayout) throws -> MllamaConfig {
        let llamaConfig = try LlamaConfig.load(from: textModel.appendingPathComponent("config.json"))
        var config = try layout.mllamaConfig(for: llamaConfig)
        // The head becomes its own tensor (mllama checkpoints carry `language_model.lm_head.weight`).
        config.textConfig.llama.tieWordEmbeddings = false
        return config
    }

    /// Builds the mllama checkpoint in `output` (created if needed; every file written atomically).
    /// - Returns: the configuration written.
    @discardableResult
    public static func initialize(textModel: URL, layout: AdapterLayout, output: URL, seed: UInt64 = 0) throws -> MllamaConfig {
        let llamaConfig = try LlamaConfig.load(from: textModel.appendingPathComponent("config.json"))
        let config = try configuration(textModel: textModel, layout: layout)
        let checkpoint = try SafetensorsCheckpoint(path: try LlamaForCausalLM.weightsPath(in: textModel))
        func text(_ name: String) throws -> Tensor { try checkpoint.tensor(name) }

        let fresh = MllamaForConditionalGeneration(
            config: config, factory: ParameterFactory(.random(seed: seed, standardDeviation: layout.initializerRange)))
        var tensors = fresh.checkpointTensors()
        if layout.gateInit != 0 {
            for name in tensors.keys where name.hasSuffix("cross_attn_attn_gate") || name.hasSuffix("cross_attn_mlp_gate") {
                let gate = tensors[name]!
                tensors[name] = Tensor([Float](repeating: Float(layout.gateInit), count: gate.elementCount), shape: gate.shape)
                    .converted(to: gate.dtype)
            }
        }

        let fused = try layout.fusedIndicesOfTextLayers(textLayers: llamaConfig.numHiddenLayers)
        let layerPrefix = "model.layers."
        var replaced = Set<String>()
        for name in checkpoint.names where name.hasPrefix(layerPrefix) && !name.hasSuffix("rotary_emb.inv_freq") {
            let rest = name.dropFirst(layerPrefix.count)
            guard let dot = rest.firstIndex(of: "."), let index = Int(rest[..<dot]), index < fused.count else {
                throw CheckpointError(file: textModel.path, reason: "unexpected tensor '\(name)' for a \(llamaConfig.numHiddenLayers)-layer model")
            }
            let target = "language_model.model.layers.\(fused[index])" + rest[dot...]
            try replace(target, with: try text(name), in: &tensors, source: textModel.path)
            replaced.insert(target)
        }
        // Every weight of a moved text layer must come from the text model, never stay random.
        let missing = fused.flatMap { index in
            tensors.keys.filter { $0.hasPrefix("language_model.model.layers.\(index).") && !replaced.contains($0) }
        }
        guard missing.isEmpty else {
            throw CheckpointError(file: textModel.path, reason: "the text model lacks \(missing.count) layer tensor(s) the adapted model needs: "
                                  + missing.sorted().prefix(8).joined(separator: ", "))
        }
        let embedding = try text("model.embed_tokens.weight")
        try replace("language_model.model.norm.weight", with: try text("model.norm.weight"), in: &tensors, source: textModel.path)
        let head = checkpoint.contains("lm_head.weight") ? try text("lm_head.weight") : embedding
        try replace("language_model.lm_head.weight", with: head, in: &tensors, source: textModel.path)
        tensors[MllamaForConditionalGeneration.embeddingTableName] = withMeanRows(embedding, count: MllamaTokenEmbedding.extraRowCount)

        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        try writeSafetensors(tensors: tensors, metadata: ["format": "pt"], to: output.appendingPathComponent("model.safetensors"))
        try AtomicFile.write(try config.jsonData(), to: output.appendingPathComponent("config.json"))
        try writeProcessorAndCompanions(layout: layout, textModel: textModel, output: output)
        return config
    }

    /// Writes the image processor's config for the layout's tiles and copies the text model's
    /// ``companionFiles`` (those it has) into `output`: what every new adapter model folder holds
    /// beside its weights and `config.json`.
    static func writeProcessorAndCompanions(layout: AdapterLayout, textModel: URL, output: URL) throws {
        let processor = MllamaImageProcessorConfig.published(tileSize: layout.vision.imageSize,
                                                             maxImageTiles: layout.vision.maxNumTiles)
        try AtomicFile.write(try processor.jsonData(), to: output.appendingPathComponent(MllamaImageProcessorConfig.fileName))
        try copyCompanions(textModel: textModel, output: output)
    }

    /// Copies the text model's ``companionFiles`` (those it has) into `output`.
    static func copyCompanions(textModel: URL, output: URL) throws {
        for name in companionFiles {
            let source = textModel.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: source.path) else { continue }
            try AtomicFile.write(try Data(contentsOf: source), to: output.appendingPathComponent(name))
        }
    }

    /// `table` `[V, D]` with `count` rows appended at the mean of its rows (in its dtype): the
    /// neutral start of a token no text has used.
    static func withMeanRows(_ table: Tensor, count: Int) -> Tensor {
        withNoGrad {
            let mean = table.converted(to: .float32).mean(axes: [0], keepingDimensions: true)      // (1, D)
            let extra = mean.expanded(to: [count, table.shape[1]]).contiguous()
            return Tensor.concatenate([table, extra.converted(to: table.dtype)], axis: 0)         // (V + count, D)
        }
    }

    /// Puts a text-model tensor in place of a fresh one, checking that the shapes agree.
    private static func replace(_ name: String, with tensor: Tensor, in tensors: inout [String: Tensor], source: String) throws {
        guard let existing = tensors[name] else {
            throw CheckpointError(file: source, reason: "the adapted model has no tensor '\(name)'")
        }
        guard existing.shape == tensor.shape else {
            throw CheckpointError(file: source, reason: "'\(name)' is \(tensor.shape) in the text model but \(existing.shape) in the adapted model")
        }
        tensors[name] = tensor
    }
}
