import Checkpoint
import Layers
import TensorCore

// Mllama's language tower (`MllamaForCausalLM`): Llama 3.1 decoder layers, with the layers listed
// in `cross_attention_layers` replaced by tanh-gated cross-attention blocks that read the image
// tokens. The self-attention layers are Llama's own (`LlamaDecoderLayer`), so with no image the
// tower computes exactly what Llama computes.
//
// Shapes: B batch, T new text tokens, S image tokens, D width, H heads, K kv heads, Dh head width,
// V text vocabulary.

// MARK: - Blocks

/// The token embedding: the text vocabulary's `[V, D]` table plus the 8 rows Mllama adds after it
/// (`<|image|>` is the first of them), which the checkpoint stores as one `[V + 8, D]` table.
///
/// The rows are held as two parameters — `weight` (`[V, D]`, the text model's, usually frozen) and
/// `extra_weight` (`[8, D]`) — so the new rows can be trained while the text table stays frozen
/// (and bf16, memory-mapped): Meta's `learnable_embedding`. Loading splits the checkpoint's
/// table, saving joins it back (see `MllamaLoading.swift`).
public final class MllamaTokenEmbedding: Module {
    override public class var checkpointKeys: [String: String] { ["extraWeight": "extra_weight"] }

    /// The number of rows added after the text vocabulary.
    public static let extraRowCount = 8

    @Param public var weight: Tensor
    @Param public var extraWeight: Tensor

    init(vocabularySize: Int, dimension: Int, factory: ParameterFactory) {
        weight = factory.normal([vocabularySize, dimension])
        extraWeight = factory.normal([Self.extraRowCount, dimension])
        super.init()
    }

    /// Integer ids `[...]` in `0..<V + 8` → `[..., D]`.
    public func callAsFunction(_ ids: Tensor) -> Tensor {
        let v = weight.shape[0]
        let values = ids.integers()
        guard values.contains(where: { $0 >= v }) else { return embedding(ids, table: weight) }
        ensure(!values.contains { $0 >= v + Self.extraRowCount },
               "token id \(values.max()!) is outside the \(v) + \(Self.extraRowCount) rows of the embedding table")
        let isExtra = Tensor(indices: values.map { $0 >= v ? 1 : 0 }, shape: ids.shape + [1])
        let isText = Tensor(indices: values.map { $0 >= v ? 0 : 1 }, shape: ids.shape + [1])
        let text = embedding(Tensor(indices: values.map { $0 >= v ? 0 : $0 }, shape: ids.shape), table: weight)
        let extra = embedding(Tensor(indices: values.map { $0 >= v ? $0 - v : 0 }, shape: ids.shape), table: extraWeight)
        return text.maskedFill(isExtra, with: 0) + extra.maskedFill(isText, with: 0)   // (..., D)
    }
}

extension MultiHeadAttention.Layout {
    /// Mllama's cross-attention from text queries to image keys and values: per-head RMSNorm on
    /// queries and keys, grouped-query heads, no biases, no rotary positions, no causal mask.
    static func mllamaCrossAttention(_ config: LlamaConfig) -> Self {
        Self(width: config.hiddenSize, heads: config.numAttentionHeads, kvHeads: config.numKeyValueHeads,
             headDimension: config.headDim, headNormEpsilon: config.rmsNormEps)
    }
}

/// A tanh-gated cross-attention block (torchtune's `FusionLayer` with `TanhGate`s):
/// `h = x + tanh(attn_gate)·xattn(norm(x))`, `out = h + tanh(mlp_gate)·(row_visible ⊙ mlp(norm(h)))`.
/// Gates start at 0, so a fresh block is the identity.
public final class MllamaCrossAttentionDecoderLayer: Module {
    override public class var checkpointKeys: [String: String] {
        ["crossAttention": "cross_attn", "inputNorm": "input_layernorm", "postAttentionNorm": "post_attention_layernorm",
         "attentionGate": "cross_attn_attn_gate", "mlpGate": "cross_attn_mlp_gate"]
    }

    /// Keys and values come from the image (``MultiHeadAttention/keysValues(_:)``, cached during generation).
    public let crossAttention: MultiHeadAttention
    let inputNorm: RMSNorm
    @Param public var attentionGate: Tensor
    let mlp: LlamaMLP
    let postAttentionNorm: RMSNorm
    @Param public var mlpGate: Tensor

    init(config: LlamaConfig, factory: ParameterFactory) {
        crossAttention = MultiHeadAttention(.mllamaCrossAttention(config), factory: factory)
        inputNorm = RMSNorm(dimension: config.hiddenSize, epsilon: config.rmsNormEps, factory: factory)
        attentionGate = factory.constant(0, shape: [1])
        mlp = LlamaMLP(hiddenSize: config.hiddenSize, intermediateSize: config.intermediateSize, bias: false, factory: factory)
        postAttentionNorm = RMSNorm(dimension: config.hiddenSize, epsilon: config.rmsNormEps, factory: factory)
        mlpGate = factory.constant(0, shape: [1])
        super.init()
    }

    /// - Parameters:
    ///   - x: `[B, T, D]`.
    ///   - keys, values: the image's `[B, K, S, Dh]` from ``MultiHeadAttention/keysValues(_:)``.
    ///   - mask: which image tokens each text token sees.
    public func callAsFunction(_ x: Tensor, keys: Tensor, values: Tensor, mask: PreparedCrossAttentionMask) -> Tensor {
        let attended = crossAttention.attend(queries: crossAttention.queries(inputNorm(x)), keys: keys, values: values,
                                             mask: AttentionMask(additive: mask.additive))                 // (B, T, D)
        let h = x + attentionGate.upcast.tanh() * attended
        var fed = mlp(postAttentionNorm(h))                                                                  // (B, T, D)
        if let rowVisible = mask.rowVisible { fed = rowVisible * fed }
        return h + mlpGate.upcast.tanh() * fed
    }
}

// MARK: - Model

/// What the cross-attention layers read in one forward pass.
struct CrossAttentionInputs {
    /// Projected image tokens `[B, S, D]`; `nil` when the keys and values come from the cache.
    var imageStates: Tensor?
    var mask: PreparedCrossAttentionMask
}

/// The decoder stack without its head (`language_model.model.*`).
public final class MllamaTextModel: Module {
    override public class var checkpointKeys: [String: String] { ["tokenEmbedding": "embed_tokens"] }

    public let tokenEmbedding: MllamaTokenEmbedding
    /// `LlamaDecoderLayer`s and, at `cross_attention_layers`, `MllamaCrossAttentionDecoderLayer`s.
    public let layers: [Module]
    public let norm: RMSNorm
    let rotary: RotaryEmbedding
    /// For each self-attention layer, its slot in the KV cache (cross-attention layers have none).
    let cacheSlots: [Int: Int]
    /// Recompute each layer's activations in the backward pass instead of keeping them (training only).
    public var activationCheckpointing = false

    init(config: MllamaTextConfig, factory: ParameterFactory) {
        let llama = config.llama
        tokenEmbedding = MllamaTokenEmbedding(vocabularySize: llama.vocabSize, dimension: llama.hiddenSize, factory: factory)
        let crossLayers = Set(config.crossAttentionLayers)
        layers = (0..<llama.numHiddenLayers).map { index -> Module in
            crossLayers.contains(index) ? MllamaCrossAttentionDecoderLayer(config: llama, factory: factory)
                                        : LlamaDecoderLayer(config: llama, factory: factory)
        }
        norm = llama.finalNorm(factory: factory)
        rotary = RotaryEmbedding(config: llama)
        var slots: [Int: Int] = [:]
        for index in 0..<llama.numHiddenLayers where !crossLayers.contains(index) { slots[index] = slots.count }
        cacheSlots = slots
        super.init()
    }

    /// Runs the decoder.
    /// - Parameters:
    ///   - embeddings: `[B, T, D]`.
    ///   - positions: each row's T rotary positions.
    ///   - mask: the causal, key-padding self-attention mask.
    ///   - crossAttention: image tokens and mask; `nil` (and nothing cached) skips the
    ///     cross-attention layers entirely — the text-only path.
    ///   - cache: self-attention KV cache and per-layer image keys/values, filled when images are given.
    ///   - firstLayer: the layer `embeddings` enter: 0, or where a ``FrozenPrefixStates`` stopped.
    ///   - endLayer: the layer to stop before; the states are then returned un-normed. `nil`: all
    ///     layers, then the final norm.
    /// - Returns: the final-normed hidden states `[B, T, D]` (un-normed when `endLayer` is given).
    func callAsFunction(embeddings: Tensor, positions: [[Int]], mask: AttentionMask,
                        crossAttention: CrossAttentionInputs?, cache: MllamaCache?,
                        firstLayer: Int = 0, endLayer: Int? = nil) -> Tensor {
        let phases = rotary.cosSin(positions: positions, dtype: embeddings.dtype)    // (B, T, Dh) each
        var h = embeddings
        for index in firstLayer..<(endLayer ?? layers.count) {
            if let layer = layers[index] as? LlamaDecoderLayer {
                if activationCheckpointing && cache == nil {
                    h = checkpointed([h], parameters: layer.trainableParameters().map(\.tensor)) { layer($0[0], rotary: phases, mask: mask, cache: nil) }
                } else {
                    h = layer(h, rotary: phases, mask: mask, cache: cache?.selfAttention.layers[cacheSlots[index]!])
                }
                continue
            }
            let layer = layers[index] as! MllamaCrossAttentionDecoderLayer
            guard let crossAttention else { continue }
            let keysValues: (keys: Tensor, values: Tensor)
            if let image = crossAttention.imageStates {
                keysValues = layer.crossAttention.keysValues(image)
                cache?.imageKeysValues[index] = keysValues
            } else if let cached = cache?.imageKeysValues[index] {
                keysValues = cached
            } else {
                continue
            }
            if activationCheckpointing && cache == nil {
                let mask = crossAttention.mask
                h = checkpointed([h, keysValues.keys, keysValues.values], parameters: layer.trainableParameters().map(\.tensor)) {
                    layer($0[0], keys: $0[1], values: $0[2], mask: mask)
                }
            } else {
                h = layer(h, keys: keysValues.keys, values: keysValues.values, mask: crossAttention.mask)
            }
        }
        return endLayer == nil ? norm(h) : h
    }
}

/// The language tower with its head (`language_model.*`): logits over the text vocabulary V.
public final class MllamaForCausalLM: Module {
    override public class var checkpointKeys: [String: String] { ["languageModelHead": "lm_head"] }

    public let config: MllamaTextConfig
    public let model: MllamaTextModel
    /// `[V, D]`; `nil` when tied to the text rows of the embedding table.
    public let languageModelHead: Linear?

    public init(config: MllamaTextConfig, factory: ParameterFactory) {
        self.config = config
        model = MllamaTextModel(config: config, factory: factory)
        languageModelHead = config.llama.languageModelHead(factory: factory)
        super.init()
    }

    /// Projects hidden states `[B, T, D]` to logits `[B, T, V]`.
    public func logits(hiddenStates: Tensor) -> Tensor {
        hiddenStates.linear(weight: languageModelHead?.weight ?? model.tokenEmbedding.weight)
    }
}

// MARK: - Cache

/// What incremental decoding keeps for Mllama: the self-attention layers' KV cache, each
/// cross-attention layer's image keys and values (computed once per image), and the last
/// cross-attention mask row (repeated for generated tokens, as transformers' `generate` does).
public final class MllamaCache {
    /// One layer per self-attention layer, in order.
    public let selfAttention: KVCache
    /// `[B, K, S, Dh]` keys and values by decoder-layer index.
    public internal(set) var imageKeysValues: [Int: (keys: Tensor, values: Tensor)] = [:]
    /// The last row of the tile mask seen, `[B, 1, N, X]`.
    public internal(set) var lastCrossAttentionRow: Tensor?

    init(selfAttention: KVCache) { self.selfAttention = selfAttention }

    /// The number of text positions cached.
    public var length: Int { selfAttention.length }
    /// Whether image keys and values are cached.
    public var hasImage: Bool { !imageKeysValues.isEmpty }
}
