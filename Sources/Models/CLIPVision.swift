import Checkpoint
import Layers
import TensorCore

// CLIP's image encoder as transformers' `CLIPVisionModel` defines it (LLaVA's vision tower): a
// stride-P patch convolution, a class token, learned position embeddings, `pre_layrnorm`, pre-norm
// encoder layers (biased attention with `out_proj`, quick-GELU MLP), and `post_layernorm`, which
// only the pooled class token goes through (LLaVA reads the unnormed hidden states).
//
// Shapes: n images, C channels, P patch side, G = (image_size / P)² patches, L = G + 1 tokens,
// E width, F MLP width.

/// The patch, class and position embeddings (`embeddings.*`).
public final class CLIPVisionEmbeddings: Module {
    override public class var checkpointKeys: [String: String] {
        ["classEmbedding": "class_embedding", "patchEmbedding": "patch_embedding", "positionEmbedding": "position_embedding"]
    }

    /// `[E]`.
    @Param var classEmbedding: Tensor
    let patchEmbedding: PatchConvolution
    /// `[L, E]`.
    let positionEmbedding: Embedding
    let config: CLIPVisionConfig

    init(config: CLIPVisionConfig, factory: ParameterFactory) {
        self.config = config
        let grid = config.imageSize / config.patchSize
        classEmbedding = factory.normal([config.hiddenSize])
        patchEmbedding = PatchConvolution(width: config.hiddenSize, channels: config.numChannels, patchSize: config.patchSize,
                                          factory: factory)
        positionEmbedding = Embedding(count: grid * grid + 1, dimension: config.hiddenSize, factory: factory)
        super.init()
    }

    /// `[n, C, H, W] → [n, L, E]`: the class token, then the patches row by row, plus positions.
    func callAsFunction(_ pixelValues: Tensor) -> Tensor {
        let n = pixelValues.shape[0], e = config.hiddenSize
        let patches = patchEmbedding(pixelValues)                                           // (n, G, E)
        let classToken = classEmbedding.upcast.reshaped([1, 1, e]).expanded(to: [n, 1, e])
        let tokens = Tensor.concatenate([classToken, patches], axis: 1)                     // (n, L, E)
        return tokens + positionEmbedding.weight.upcast.reshaped([1, tokens.shape[1], e])
    }
}

/// A pre-norm encoder layer: `h = x + attn(ln1(x))`, `out = h + mlp(ln2(h))`.
public final class CLIPEncoderLayer: Module {
    override public class var checkpointKeys: [String: String] {
        ["selfAttention": "self_attn", "layerNorm1": "layer_norm1", "layerNorm2": "layer_norm2"]
    }

    let layerNorm1: LayerNorm
    let selfAttention: MultiHeadAttention
    let layerNorm2: LayerNorm
    let mlp: VisionMLP

    init(config: CLIPVisionConfig, activation: Activation, factory: ParameterFactory) {
        layerNorm1 = LayerNorm(dimension: config.hiddenSize, epsilon: config.layerNormEps, factory: factory)
        selfAttention = MultiHeadAttention(.init(width: config.hiddenSize, heads: config.numAttentionHeads, projectionBias: true,
                                                 outputKey: "out_proj"), factory: factory)
        layerNorm2 = LayerNorm(dimension: config.hiddenSize, epsilon: config.layerNormEps, factory: factory)
        mlp = VisionMLP(width: config.hiddenSize, intermediateSize: config.intermediateSize, activation: activation, factory: factory)
        super.init()
    }

    /// `[n, L, E] → [n, L, E]`.
    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = x + selfAttention(layerNorm1(x), mask: .none)
        return h + mlp(layerNorm2(h))
    }
}

/// The stack of encoder layers (`encoder.layers.*`).
public final class CLIPEncoder: Module {
    public let layers: [CLIPEncoderLayer]
    /// Recompute each layer's activations in the backward pass instead of keeping them (training only).
    public var activationCheckpointing = false

    init(config: CLIPVisionConfig, activation: Activation, factory: ParameterFactory) {
        layers = (0..<config.numHiddenLayers).map { _ in CLIPEncoderLayer(config: config, activation: activation, factory: factory) }
        super.init()
    }
}

/// CLIP's vision transformer (`vision_tower.vision_model.*` in LLaVA checkpoints).
public final class CLIPVisionModel: Module {
    override public class var checkpointKeys: [String: String] {
        ["preNorm": "pre_layrnorm", "postNorm": "post_layernorm"]
    }

    public let config: CLIPVisionConfig
    let embeddings: CLIPVisionEmbeddings
    /// transformers spells it `pre_layrnorm`.
    let preNorm: LayerNorm
    public let encoder: CLIPEncoder
    /// Applied to the pooled class token only; LLaVA does not use it.
    let postNorm: LayerNorm

    /// - Precondition: `hidden_act` is one ``Activation`` implements (``LlavaForConditionalGeneration/load(directory:)`` checks it first).
    public init(config: CLIPVisionConfig, factory: ParameterFactory) {
        guard let activation = Activation(named: config.hiddenAct) else {
            fatalError("vision_config.hidden_act '\(config.hiddenAct)' is not implemented (\(Activation.implementedNames))")
        }
        self.config = config
        embeddings = CLIPVisionEmbeddings(config: config, factory: factory)
        preNorm = LayerNorm(dimension: config.hiddenSize, epsilon: config.layerNormEps, factory: factory)
        encoder = CLIPEncoder(config: config, activation: activation, factory: factory)
        postNorm = LayerNorm(dimension: config.hiddenSize, epsilon: config.layerNormEps, factory: factory)
        super.init()
    }

    /// Tokens per image: the patches plus the class token.
    public var tokensPerImage: Int { (config.imageSize / config.patchSize) * (config.imageSize / config.patchSize) + 1 }

    /// The hidden states transformers' `output_hidden_states` lists, at the given indices: index 0
    /// is the input of the first layer (after `pre_layrnorm`), index `i` the output of layer `i`;
    /// negative indices count from the end (−1 is the last layer's output, not post-normed). Only
    /// the layers up to the deepest index asked for run.
    /// - Parameters:
    ///   - pixelValues: `[n, C, image_size, image_size]`.
    ///   - indices: each in `-(layers + 1)…layers`.
    /// - Returns: one `[n, L, E]` tensor per index, in the order of `indices`.
    public func hiddenStates(_ pixelValues: Tensor, at indices: [Int]) -> [Tensor] {
        let count = config.numHiddenLayers + 1
        ensure(pixelValues.rank == 4 && pixelValues.shape[1] == config.numChannels
               && pixelValues.shape[2] == config.imageSize && pixelValues.shape[3] == config.imageSize,
               "pixel_values must be [n, \(config.numChannels), \(config.imageSize), \(config.imageSize)], got \(pixelValues.shape)")
        let resolved = indices.map { $0 < 0 ? $0 + count : $0 }
        ensure(resolved.allSatisfy { (0..<count).contains($0) },
               "vision_feature_layer \(indices) must index the \(count) hidden states (embeddings + \(config.numHiddenLayers) layers)")
        var states = [preNorm(embeddings(pixelValues))]                                     // (n, L, E)
        for layer in encoder.layers.prefix(resolved.max() ?? 0) {
            let input = states.last!
            states.append(encoder.activationCheckpointing
                          ? checkpointed([input], parameters: layer.trainableParameters().map(\.tensor)) { layer($0[0]) }
                          : layer(input))
        }
        return resolved.map { states[$0] }
    }
}
