import Checkpoint
import Layers
import TensorCore

// Mllama's image encoder (`MllamaVisionModel`, Meta's `VisionEncoder`): each image is cut into
// tiles; each tile into P×P patches embedded by a stride-P convolution; a class token and gated
// positional embeddings (shared and per aspect ratio) are added; a local ViT runs over all tiles
// of an image jointly, keeping the INPUTS of some of its layers (Meta and transformers 4.45.2 keep
// inputs; transformers 5 keeps outputs — we follow Meta); then a gated global ViT. The output
// stacks the final hidden state and the kept features on the last axis.
//
// Shapes: B batch, N images per row, X tiles per image (max_num_tiles), C channels,
// L tokens per tile (patches + class token), Lp = L rounded up to a multiple of 8, E vision width,
// F MLP width, Hv heads, Dv head width, I kept intermediate layers.

// MARK: - Blocks

/// A pre-norm ViT layer; in the global encoder both residual branches are scaled by `tanh(gate)`:
/// `h = x + tanh(gate_attn)·attn(ln(x))`, `out = h + tanh(gate_ffn)·mlp(ln(h))`.
public final class MllamaVisionEncoderLayer: Module {
    override public class var checkpointKeys: [String: String] {
        ["selfAttention": "self_attn", "inputNorm": "input_layernorm", "postAttentionNorm": "post_attention_layernorm",
         "attentionGate": "gate_attn", "feedForwardGate": "gate_ffn"]
    }

    let selfAttention: MultiHeadAttention
    let mlp: VisionMLP
    let inputNorm: LayerNorm
    let postAttentionNorm: LayerNorm
    /// `[1]` gates, present in the global encoder only (π/4 at initialisation, as transformers).
    @Param var attentionGate: Tensor?
    @Param var feedForwardGate: Tensor?

    init(config: MllamaVisionConfig, isGated: Bool, factory: ParameterFactory) {
        // Multi-head self-attention with no biases and no rotary positions.
        selfAttention = MultiHeadAttention(.init(width: config.hiddenSize, heads: config.attentionHeads), factory: factory)
        ensure(config.hiddenAct == "gelu", "vision hidden_act '\(config.hiddenAct)' is not implemented (VLMKit implements 'gelu')")
        mlp = VisionMLP(width: config.hiddenSize, intermediateSize: config.intermediateSize, activation: .gelu, factory: factory)
        inputNorm = LayerNorm(dimension: config.hiddenSize, epsilon: config.normEps, factory: factory)
        postAttentionNorm = LayerNorm(dimension: config.hiddenSize, epsilon: config.normEps, factory: factory)
        attentionGate = isGated ? factory.constant(Double.pi / 4, shape: [1]) : nil
        feedForwardGate = isGated ? factory.constant(Double.pi / 4, shape: [1]) : nil
        super.init()
    }

    /// `[B, T, E] → [B, T, E]`.
    public func callAsFunction(_ x: Tensor, mask: AttentionMask) -> Tensor {
        var attended = selfAttention(inputNorm(x), mask: mask)                      // (B, T, E)
        if let attentionGate { attended = attentionGate.upcast.tanh() * attended }
        let h = x + attended
        var fed = mlp(postAttentionNorm(h))                                         // (B, T, E)
        if let feedForwardGate { fed = feedForwardGate.upcast.tanh() * fed }
        return h + fed
    }
}

/// A stack of vision layers (`transformer` or `global_transformer`).
public final class MllamaVisionEncoder: Module {
    public let layers: [MllamaVisionEncoderLayer]
    /// Recompute each layer's activations in the backward pass instead of keeping them (training only).
    public var activationCheckpointing = false

    init(config: MllamaVisionConfig, layerCount: Int, isGated: Bool, factory: ParameterFactory) {
        layers = (0..<layerCount).map { _ in MllamaVisionEncoderLayer(config: config, isGated: isGated, factory: factory) }
        super.init()
    }

    /// Runs every layer; returns the final state and the INPUTS of the layers in `keeping`
    /// (in the order of `keeping`), as Meta's `return_intermediate` does.
    func callAsFunction(_ x: Tensor, mask: AttentionMask, keeping: [Int] = []) -> (Tensor, [Tensor]) {
        var h = x
        var kept: [Int: Tensor] = [:]
        for (index, layer) in layers.enumerated() {
            if keeping.contains(index) { kept[index] = h }
            h = activationCheckpointing ? checkpointed([h], parameters: layer.trainableParameters().map(\.tensor)) { layer($0[0], mask: mask) }
                                        : layer(h, mask: mask)
        }
        return (h, keeping.map { kept[$0]! })
    }
}

/// A per-aspect-ratio embedding added to every token of each tile, scaled by `tanh(gate)`
/// (`pre_tile_positional_embedding`, `post_tile_positional_embedding`).
public final class MllamaAspectRatioEmbedding: Module {
    /// `[max_aspect_ratio_id + 1, X·E]`.
    let embedding: Embedding
    @Param var gate: Tensor
    let maxTiles: Int

    init(config: MllamaVisionConfig, factory: ParameterFactory) {
        maxTiles = config.maxNumTiles
        embedding = Embedding(count: config.supportedAspectRatios.count + 1, dimension: config.maxNumTiles * config.hiddenSize,
                              factory: factory)
        gate = factory.constant(0, shape: [1])
        super.init()
    }

    /// `x` `[B·N, X, L, E]` plus each image's row `[X, 1, E]`, gated.
    func callAsFunction(_ x: Tensor, aspectRatioIds: Tensor) -> Tensor {
        let e = x.shape[3]
        let rows = embedding(aspectRatioIds).reshaped([-1, maxTiles, 1, e])          // (B·N, X, 1, E)
        return x + rows * gate.upcast.tanh()
    }
}

/// The position embedding shared by all tiles, blended by a gate with a per-aspect-ratio
/// embedding of every (tile, token): `x + (1 − tanh g)·embedding + tanh g·tile_embedding[id]`.
public final class MllamaGatedPositionalEmbedding: Module {
    override public class var checkpointKeys: [String: String] { ["tileEmbedding": "tile_embedding"] }

    /// `[L, E]`.
    @Param var embedding: Tensor
    /// `[max_aspect_ratio_id + 1, X·L·E]`.
    let tileEmbedding: Embedding
    @Param var gate: Tensor
    let maxTiles: Int

    init(config: MllamaVisionConfig, factory: ParameterFactory) {
        let tokens = (config.imageSize / config.patchSize) * (config.imageSize / config.patchSize) + 1
        maxTiles = config.maxNumTiles
        embedding = factory.normal([tokens, config.hiddenSize])
        tileEmbedding = Embedding(count: config.supportedAspectRatios.count + 1,
                                  dimension: config.maxNumTiles * tokens * config.hiddenSize, factory: factory)
        gate = factory.constant(0, shape: [1])
        super.init()
    }

    /// `[B·N, X, L, E] → [B·N, X, L, E]`.
    func callAsFunction(_ x: Tensor, aspectRatioIds: Tensor) -> Tensor {
        let (images, l, e) = (x.shape[0], x.shape[2], x.shape[3])
        let g = gate.upcast.tanh()
        let shared = x + ((1.0 - g) * embedding.upcast).reshaped([1, 1, l, e])
        let perTile = tileEmbedding(aspectRatioIds).reshaped([images, maxTiles, l, e])   // (B·N, X, L, E)
        return shared + g * perTile
    }
}

// MARK: - Model

/// The tiled image encoder (`vision_model.*` in checkpoints).
public final class MllamaVisionModel: Module {
    override public class var checkpointKeys: [String: String] {
        ["patchEmbedding": "patch_embedding", "classEmbedding": "class_embedding",
         "gatedPositionalEmbedding": "gated_positional_embedding",
         "preTilePositionalEmbedding": "pre_tile_positional_embedding",
         "postTilePositionalEmbedding": "post_tile_positional_embedding",
         "preNorm": "layernorm_pre", "postNorm": "layernorm_post", "globalTransformer": "global_transformer"]
    }

    public let config: MllamaVisionConfig
    let patchEmbedding: PatchConvolution
    /// `[E]`.
    @Param var classEmbedding: Tensor
    let gatedPositionalEmbedding: MllamaGatedPositionalEmbedding
    let preTilePositionalEmbedding: MllamaAspectRatioEmbedding
    let postTilePositionalEmbedding: MllamaAspectRatioEmbedding
    let preNorm: LayerNorm
    let postNorm: LayerNorm
    public let transformer: MllamaVisionEncoder
    public let globalTransformer: MllamaVisionEncoder

    public init(config: MllamaVisionConfig, factory: ParameterFactory) {
        self.config = config
        patchEmbedding = PatchConvolution(width: config.hiddenSize, channels: config.numChannels, patchSize: config.patchSize,
                                          factory: factory)
        classEmbedding = factory.normal([config.hiddenSize])
        gatedPositionalEmbedding = MllamaGatedPositionalEmbedding(config: config, factory: factory)
        preTilePositionalEmbedding = MllamaAspectRatioEmbedding(config: config, factory: factory)
        postTilePositionalEmbedding = MllamaAspectRatioEmbedding(config: config, factory: factory)
        // transformers builds these two with nn.LayerNorm's default ε (1e-5), not norm_eps.
        preNorm = LayerNorm(dimension: config.hiddenSize, epsilon: 1e-5, factory: factory)
        postNorm = LayerNorm(dimension: config.hiddenSize, epsilon: 1e-5, factory: factory)
        transformer = MllamaVisionEncoder(config: config, layerCount: config.numHiddenLayers, isGated: false, factory: factory)
        globalTransformer = MllamaVisionEncoder(config: config, layerCount: config.numGlobalLayers, isGated: true, factory: factory)
        super.init()
    }

    /// Tokens per tile: the patches of one tile plus the class token.
    public var tokensPerTile: Int { (config.imageSize / config.patchSize) * (config.imageSize / config.patchSize) + 1 }

    /// The width of the output: E·(1 + I).
    public var outputWidth: Int { config.hiddenSize * (1 + config.intermediateLayersIndices.count) }

    /// Encodes a batch of tiled images.
    /// - Parameters:
    ///   - pixelValues: `[B, N, X, C, Hpx, Wpx]` (X = `max_num_tiles`), as the image processor makes them.
    ///   - aspectRatioIds: `[B, N]` integers; 0 is a padded image, `k` the k-th supported aspect ratio.
    ///   - aspectRatioMask: `[B, N, X]`, 1 for a real tile; all ones when `nil`.
    /// - Returns: `[B, N, X, L, E·(1 + I)]`: the final hidden state (E), then the kept layer inputs
    ///   interleaved feature by feature (`index = e·I + i`), as `torch.stack(..., dim=-1)` lays them out.
    public func callAsFunction(pixelValues: Tensor, aspectRatioIds: Tensor, aspectRatioMask: Tensor? = nil) -> Tensor {
        ensure(pixelValues.rank == 6, "pixel_values must be [B, N, X, C, H, W], got \(pixelValues.shape)")
        let (b, n, x) = (pixelValues.shape[0], pixelValues.shape[1], pixelValues.shape[2])
        let (c, height, width) = (pixelValues.shape[3], pixelValues.shape[4], pixelValues.shape[5])
        let e = config.hiddenSize, images = b * n
        ensure(x == config.maxNumTiles, "pixel_values must have max_num_tiles = \(config.maxNumTiles) tiles per image, got \(x)")
        ensure(aspectRatioIds.shape == [b, n], "aspect_ratio_ids must be [B, N] = [\(b), \(n)], got \(aspectRatioIds.shape)")
        let tileMask = aspectRatioMask ?? Tensor(indices: Array(repeating: 1, count: images * x), shape: [b, n, x])
        ensure(tileMask.shape == [b, n, x], "aspect_ratio_mask must be [B, N, X] = [\(b), \(n), \(x)], got \(tileMask.shape)")
        let ids = aspectRatioIds.reshaped([images])

        var h = patchEmbedding(pixelValues.reshaped([images * x, c, height, width]))    // (B·N·X, L−1, E)
        let patches = h.shape[1], l = patches + 1
        ensure(l == tokensPerTile, "images of \(height)×\(width) pixels give \(patches) patches; the model expects \(tokensPerTile - 1)")
        h = preTilePositionalEmbedding(h.reshaped([images, x, patches, e]), aspectRatioIds: ids)  // (B·N, X, L−1, E)
        let classToken = classEmbedding.upcast.reshaped([1, 1, e]).expanded(to: [images * x, 1, e])
        h = Tensor.concatenate([classToken, h.reshaped([images * x, patches, e])], axis: 1)   // (B·N·X, L, E)
        h = gatedPositionalEmbedding(h.reshaped([images, x, l, e]), aspectRatioIds: ids)      // (B·N, X, L, E)
        h = preNorm(h)

        // Pad each tile to a multiple of 8 tokens; padding rows are zeros.
        let padding = (8 - l % 8) % 8, lp = l + padding
        if padding > 0 {
            h = Tensor.concatenate([h, Tensor(zeros: [images, x, padding, e], dtype: h.dtype)], axis: 2)  // (B·N, X, Lp, E)
        }
        let mask = AttentionMask(additive: Self.paddingMask(tileMask: tileMask.reshaped([images, x]), tokens: l,
                                                            paddedTokens: lp, dtype: h.dtype))
        var (local, kept) = transformer(h.reshaped([images, x * lp, e]), mask: mask,
                                        keeping: config.intermediateLayersIndices)          // (B·N, X·Lp, E)
        local = postNorm(local)
        local = postTilePositionalEmbedding(local.reshaped([images, x, lp, e]), aspectRatioIds: ids)
        let (global, _) = globalTransformer(local.reshaped([images, x * lp, e]), mask: mask)  // (B·N, X·Lp, E)

        var pieces = [global.reshaped([images, x, lp, e]).slice(axis: 2, 0..<l)]             // (B·N, X, L, E)
        if !kept.isEmpty {
            let stacked = Tensor.concatenate(kept.map { $0.unsqueezed(axis: 3) }, axis: 3)    // (B·N, X·Lp, E, I)
            pieces.append(stacked.reshaped([images, x, lp, e * kept.count]).slice(axis: 2, 0..<l))  // (B·N, X, L, E·I)
        }
        let output = pieces.count == 1 ? pieces[0].contiguous() : Tensor.concatenate(pieces, axis: 3)
        return output.reshaped([b, n, x, l, outputWidth])                                     // (B, N, X, L, E·(1+I))
    }

    /// The encoder's additive mask `[B·N, 1, X·Lp, X·Lp]`, as Meta's `build_encoder_attention_mask`
    /// and transformers' `_prepare_aspect_ratio_attention_mask` make it: a token is "padding" when
    /// it is one of a tile's padding tokens or belongs to a padded tile, and the mask is
    /// `pad_i·pad_j·min` — only padding queries are kept from padding keys; real queries see
    /// every key, padding included. `min` is the dtype's most negative finite value (not −∞), so
    /// the softmax is computed exactly as in the reference.
    ///
    /// (transformers 4.45.2 would mark every token as padding if L were a multiple of 8 — it slices
    /// `[-0:]` — but L = g² + 1 never is: squares are 0, 1 or 4 modulo 8.)
    static func paddingMask(tileMask: Tensor, tokens: Int, paddedTokens: Int, dtype: DType) -> Tensor {
        let images = tileMask.shape[0], tiles = tileMask.shape[1]
        let real = tileMask.integers()
        let length = tiles * paddedTokens
        let mask = Tensor(zeros: [images, 1, length, length], dtype: dtype)
        func fill<T: ComputeScalar & BinaryFloatingPoint>(_ values: UnsafeMutablePointer<T>) {
            for image in 0..<images {
                let padding = (0..<length).filter { index in
                    let (tile, token) = index.quotientAndRemainder(dividingBy: paddedTokens)
                    return real[image * tiles + tile] == 0 || token >= tokens
                }
                for i in padding {
                    let row = values + (image * length + i) * length
                    for j in padding { row[j] = -T.greatestFiniteMagnitude }
                }
            }
        }
        if dtype == .float64 { fill(mask.doublePointer) } else { fill(mask.floatPointer) }
        return mask
    }
}
