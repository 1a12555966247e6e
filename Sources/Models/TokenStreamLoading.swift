import Checkpoint
import Foundation
import Layers
import TensorCore

extension TokenStreamModel {
    /// Loads a folder written by ``save(to:)`` (`config.json` with `model_type: vlmkit_token_stream`,
    /// `model.safetensors`). Weights are memory-mapped in their stored dtype and frozen; loading is
    /// strict (missing, unexpected or mis-shaped tensors are listed).
    public static func load(directory: URL) throws -> TokenStreamModel {
        let config = try TokenStreamConfig.load(from: directory.appendingPathComponent("config.json"))
        let model = TokenStreamModel(config: config, factory: ParameterFactory(.uninitialized))
        let checkpoint = try SafetensorsCheckpoint(path: try LlamaForCausalLM.weightsPath(in: directory))
        var tensors: [String: Tensor] = [:]
        for name in checkpoint.names where !name.hasSuffix("rotary_emb.inv_freq") { tensors[name] = try checkpoint.tensor(name) }
        try model.loadParameters(tensors, source: directory.path)
        return model
    }

    /// Writes `config.json` and `model.safetensors` (each tensor in its dtype) into `directory`,
    /// creating it; each file is written atomically. A tied head is not written.
    public func save(to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let tensors = Dictionary(uniqueKeysWithValues: parameters().map { ($0.name, $0.tensor.detached()) })
        try writeSafetensors(tensors: tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent("model.safetensors"))
        try AtomicFile.write(try config.jsonData(), to: directory.appendingPathComponent("config.json"))
    }
}

extension AdapterInitialization {
    /// Builds the token-stream comparison model in `output` from a Llama checkpoint and a layout
    /// whose `architecture` is `llava-linear` or `llava-mlp2x`: the text model's weights as they are
    /// (not a bit changes), and a fresh image encoder drawn exactly as
    /// ``initialize(textModel:layout:output:seed:)`` draws the cross-attention model's — same
    /// layout, same seed, same encoder weights — then a fresh projector. Writes `model.safetensors`,
    /// `config.json`, `preprocessor_config.json` and the text model's ``companionFiles``.
    /// - Returns: the configuration written.
    @discardableResult
    public static func initializeTokenStream(textModel: URL, layout: AdapterLayout, output: URL, seed: UInt64 = 0) throws -> TokenStreamConfig {
        guard let projectorType = layout.architecture.projectorType else {
            throw AdapterLayout.Mismatch(description: "architecture \(layout.architecture.rawValue) is not a token-stream design")
        }
        let llama = try LlamaForCausalLM.load(directory: textModel)
        _ = try layout.mllamaConfig(for: llama.config)   // the same checks of the encoder's shape
        let config = TokenStreamConfig(textConfig: llama.config, visionConfig: layout.vision, imageTokenIndex: llama.config.vocabSize,
                                       projectorType: projectorType)
        // The cross-attention model builds its encoder first from the same generator, so these
        // draws are its encoder's weights.
        let factory = ParameterFactory(.random(seed: seed, standardDeviation: layout.initializerRange))
        let vision = MllamaVisionModel(config: layout.vision, factory: factory)
        let model = TokenStreamModel(config: config, visionModel: vision,
                                     projector: TokenStreamModel.makeProjector(config: config, factory: factory), languageModel: llama)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        try model.save(to: output)
        try writeProcessorAndCompanions(layout: layout, textModel: textModel, output: output)
        return config
    }
}
