import Checkpoint
import Layers
import Models
import TensorCore

/// The Mllama shapes `vlm bench train` and `vlm bench generate` run, matching `PRESETS` in
/// `../shared/bench/peer_mllama_train.py` (the PyTorch peer) field for field.
struct MllamaBenchPreset {
    let name: String
    let config: MllamaConfig
    /// Rows per training batch and text tokens per row.
    let batch: Int, tokens: Int
    /// Tiles per image (all real) and the aspect-ratio id of that tile grid (6 = 2×2).
    let tiles: Int, aspectRatioId: Int

    static let names = ["small"]

    static func named(_ name: String) -> MllamaBenchPreset? {
        switch name {
        case "small":
            // text: hidden 512, 10 layers (3 and 8 cross-attend), 8 heads / 2 kv heads, MLP 1536,
            // vocabulary 8192; vision: width 256, 4 local + 2 global layers, 4 heads, MLP 1024,
            // 112-px tiles of 14-px patches, 4 tiles, layers [1, 3] kept, output 768.
            // transformers' MllamaTextConfig defaults: rms_norm_eps 1e-5, rope_theta 500000.
            let llama = LlamaConfig(vocabSize: 8192, hiddenSize: 512, intermediateSize: 1536, numHiddenLayers: 10,
                                    numAttentionHeads: 8, numKeyValueHeads: 2, rmsNormEps: 1e-5,
                                    rope: RopeParameters(ropeTheta: 500_000), bosTokenId: 1, eosTokenIds: [2], padTokenId: 0,
                                    modelType: "mllama_text_model")
            let vision = MllamaVisionConfig(hiddenSize: 256, numHiddenLayers: 4, numGlobalLayers: 2, attentionHeads: 4,
                                            intermediateSize: 1024, imageSize: 112, patchSize: 14, maxNumTiles: 4,
                                            intermediateLayersIndices: [1, 3], visionOutputDim: 768)
            let config = MllamaConfig(textConfig: MllamaTextConfig(llama: llama, crossAttentionLayers: [3, 8]),
                                      visionConfig: vision, imageTokenIndex: 8191)
            return MllamaBenchPreset(name: name, config: config, batch: 8, tokens: 128, tiles: 4, aspectRatioId: 6)
        default:
            return nil
        }
    }

    /// The same kind of step on another model's shapes: one image of one tile per row (the built-in
    /// world's layout; aspect-ratio id 1 = 1×1), `batch` rows of `tokens` tokens.
    func timing(_ config: MllamaConfig, batch: Int, tokens: Int, name: String) -> MllamaBenchPreset {
        MllamaBenchPreset(name: name, config: config, batch: batch, tokens: tokens, tiles: 1, aspectRatioId: 1)
    }

    /// A model with seeded random weights (transformers' initialisation: normal(0, 0.02)).
    func makeModel() -> MllamaForConditionalGeneration {
        let model = MllamaForConditionalGeneration(config: config, factory: ParameterFactory(.random(seed: 0, standardDeviation: 0.02)))
        // The peer is transformers: a text row that sees no tile attends to every image token.
        model.crossAttentionMasking = .huggingface
        return model
    }

    /// Inputs as the peer makes them: ids uniform in `3..<V−2` with `<|image|>` second, one image
    /// of `tiles` real tiles per row with normal pixels, and a cross-attention mask of ones
    /// except for the first token.
    func inputs(batch: Int, tokens: Int, seed: UInt64) -> (ids: [Int], pixels: Tensor, aspectRatioIds: Tensor,
                                                          aspectRatioMask: Tensor, crossAttentionMask: Tensor) {
        let vocabulary = config.textConfig.llama.vocabSize
        var generator = RandomGenerator(seed: seed)
        var ids = (0..<(batch * tokens)).map { _ in 3 + Int(generator.next() % UInt64(vocabulary - 5)) }
        for row in 0..<batch where tokens > 1 { ids[row * tokens + 1] = config.imageTokenIndex }
        let size = config.visionConfig.imageSize
        let pixels = Tensor.randomNormal([batch, 1, tiles, 3, size, size], standardDeviation: 1, using: &generator)
        let ratios = Tensor(indices: Array(repeating: aspectRatioId, count: batch), shape: [batch, 1])
        let tileMask = Tensor(indices: Array(repeating: 1, count: batch * tiles), shape: [batch, 1, tiles])
        var rows = Array(repeating: 1, count: batch * tokens * tiles)
        for row in 0..<batch { for tile in 0..<tiles { rows[row * tokens * tiles + tile] = 0 } }
        let crossMask = Tensor(indices: rows, shape: [batch, tokens, 1, tiles])
        return (ids, pixels, ratios, tileMask, crossMask)
    }
}
