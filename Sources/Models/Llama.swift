import Checkpoint
import Layers
import TensorCore

// Llama 3.1 as `LlamaForCausalLM` defines it: token embedding, pre-norm decoder layers of grouped-query
// self-attention with rotary positions and a SwiGLU MLP, a final RMSNorm, and an untied or tied
// `lm_head`. Parameter names are Hugging Face's.
//
// Shapes: B batch, T new tokens, S keys (cached + new), D hidden width, H heads, K kv heads,
// Dh head width, F MLP width, V vocabulary.

// MARK: - Blocks

/// Grouped-query self-attention with rotary position embeddings.
public final class LlamaAttention: Module {
    override public class var checkpointKeys: [String: String] {
        ["queryProjection": "q_proj", "keyProjection": "k_proj", "valueProjection": "v_proj", "outputProjection": "o_proj"]
    }

    let queryProjection: Linear
    let keyProjection: Linear
    let valueProjection: Linear
    let outputProjection: Linear
    let heads: Int
    let kvHeads: Int
    let headDimension: Int

    init(config: LlamaConfig, factory: ParameterFactory) {
        heads = config.numAttentionHeads
        kvHeads = config.numKeyValueHeads
        headDimension = config.headDim
        let d = config.hiddenSize, bias = config.attentionBias
        queryProjection = Linear(inFeatures: d, outFeatures: heads * headDimension, bias: bias, factory: factory)
        keyProjection = Linear(inFeatures: d, outFeatures: kvHeads * headDimension, bias: bias, factory: factory)
        valueProjection = Linear(inFeatures: d, outFeatures: kvHeads * headDimension, bias: bias, factory: factory)
        outputProjection = Linear(inFeatures: heads * headDimension, outFeatures: d, bias: bias, factory: factory)
        super.init()
    }

    /// - Parameters:
    ///   - x: `[B, T, D]`.
    ///   - rotary: cos and sin tables, `[B, T, Dh]`.
    ///   - mask: causal with the cache's offset, plus key padding `[B, S]`.
    ///   - cache: this layer's KV cache, appended to when given.
    func callAsFunction(_ x: Tensor, rotary: (cos: Tensor, sin: Tensor), mask: AttentionMask,
                        cache: KVCache.Layer?) -> Tensor {
        let b = x.shape[0], t = x.shape[1]
        let q = queryProjection(x).reshaped([b, t, heads, headDimension]).permuted([0, 2, 1, 3])     // (B, H, T, Dh)
        var k = keyProjection(x).reshaped([b, t, kvHeads, headDimension]).permuted([0, 2, 1, 3])     // (B, K, T, Dh)
        var v = valueProjection(x).reshaped([b, t, kvHeads, headDimension]).permuted([0, 2, 1, 3])   // (B, K, T, Dh)
        let rotatedQuery = applyRotaryEmbedding(q, cos: rotary.cos, sin: rotary.sin)                  // (B, H, T, Dh)
        k = applyRotaryEmbedding(k, cos: rotary.cos, sin: rotary.sin)                                 // (B, K, T, Dh)
        if let cache { (k, v) = cache.append(keys: k, values: v) }                                     // (B, K, S, Dh)
        let attended = scaledDotProductAttention(query: rotatedQuery, key: k, value: v, mask: mask)  // (B, H, T, Dh)
        return outputProjection(attended.permuted([0, 2, 1, 3]).reshaped([b, t, heads * headDimension])) // (B, T, D)
    }
}

/// The SwiGLU feed-forward block: `down(silu(gate(x)) ⊙ up(x))`.
public final class LlamaMLP: Module {
    override public class var checkpointKeys: [String: String] {
        ["gateProjection": "gate_proj", "upProjection": "up_proj", "downProjection": "down_proj"]
    }

    let gateProjection: Linear
    let upProjection: Linear
    let downProjection: Linear

    init(hiddenSize: Int, intermediateSize: Int, bias: Bool, factory: ParameterFactory) {
        gateProjection = Linear(inFeatures: hiddenSize, outFeatures: intermediateSize, bias: bias, factory: factory)
        upProjection = Linear(inFeatures: hiddenSize, outFeatures: intermediateSize, bias: bias, factory: factory)
        downProjection = Linear(inFeatures: intermediateSize, outFeatures: hiddenSize, bias: bias, factory: factory)
        super.init()
    }

    /// `[B, T, D] → [B, T, D]`.
    func callAsFunction(_ x: Tensor) -> Tensor {
        downProjection(swiglu(gate: gateProjection(x), up: upProjection(x)))   // (B, T, F) → (B, T, D)
    }
}

/// A pre-norm decoder layer: `h = x + attn(norm(x))`, `out = h + mlp(norm(h))`.
public final class LlamaDecoderLayer: Module {
    override public class var checkpointKeys: [String: String] {
        ["selfAttention": "self_attn", "inputNorm": "input_layernorm", "postAttentionNorm": "post_attention_layernorm"]
    }

    let selfAttention: LlamaAttention
    let mlp: LlamaMLP
    let inputNorm: RMSNorm
    let postAttentionNorm: RMSNorm

    init(config: LlamaConfig, factory: ParameterFactory) {
        selfAttention = LlamaAttention(config: config, factory: factory)
        mlp = LlamaMLP(hiddenSize: config.hiddenSize, intermediateSize: config.intermediateSize, bias: config.mlpBias,
                       factory: factory)
        inputNorm = RMSNorm(dimension: config.hiddenSize, epsilon: config.rmsNormEps, factory: factory)
        postAttentionNorm = RMSNorm(dimension: config.hiddenSize, epsilon: config.rmsNormEps, factory: factory)
        super.init()
    }

    func callAsFunction(_ x: Tensor, rotary: (cos: Tensor, sin: Tensor), mask: AttentionMask,
                        cache: KVCache.Layer?) -> Tensor {
        let h = x + selfAttention(inputNorm(x), rotary: rotary, mask: mask, cache: cache)   // (B, T, D)
        return h + mlp(postAttentionNorm(h))                                               // (B, T, D)
    }
}

// MARK: - Model

/// The decoder stack without the language-model head (`model.*` in checkpoints).
public final class LlamaModel: Module {
    override public class var checkpointKeys: [String: String] { ["tokenEmbedding": "embed_tokens"] }

    public let tokenEmbedding: Embedding
    public internal(set) var layers: [LlamaDecoderLayer]
    /// Recompute each layer's activations in the backward pass instead of keeping them (training
    /// only; ``checkpointed(_:parameters:_:)``).
    public var activationCheckpointing = false
    public let norm: RMSNorm
    public let rotary: RotaryEmbedding

    init(config: LlamaConfig, factory: ParameterFactory) {
        tokenEmbedding = Embedding(count: config.vocabSize, dimension: config.hiddenSize, factory: factory)
        layers = (0..<config.numHiddenLayers).map { _ in LlamaDecoderLayer(config: config, factory: factory) }
        norm = RMSNorm(dimension: config.hiddenSize, epsilon: config.rmsNormEps, factory: factory)
        rotary = RotaryEmbedding(config: config)
        super.init()
    }

    /// Runs the decoder over input embeddings.
    /// - Parameters:
    ///   - embeddings: `[B, T, D]`.
    ///   - positions: each row's T positions (rotary phases).
    ///   - mask: the attention mask (causal, key padding over S keys).
    ///   - cache: appended to and attended to when given.
    /// - Returns: the final-normed hidden states `[B, T, D]`.
    public func callAsFunction(embeddings: Tensor, positions: [[Int]], mask: AttentionMask, cache: KVCache?) -> Tensor {
        let phases = rotary.cosSin(positions: positions)                                  // (B, T, Dh) each
        var h = embeddings
        for (index, layer) in layers.enumerated() {
            if activationCheckpointing && cache == nil {
                h = checkpointed([h], parameters: layer.trainableParameters().map(\.tensor)) { layer($0[0], rotary: phases, mask: mask, cache: nil) }
            } else {
                h = layer(h, rotary: phases, mask: mask, cache: cache?.layers[index])
            }
        }
        return norm(h)
    }
}

/// Llama with its language-model head: `LlamaForCausalLM`.
public final class LlamaForCausalLM: Module {
    override public class var checkpointKeys: [String: String] { ["languageModelHead": "lm_head"] }

    public let config: LlamaConfig
    public let model: LlamaModel
    /// The output projection; `nil` when tied to the token embedding.
    public let languageModelHead: Linear?

    /// A model with weights from `factory` (random, or placeholders to load into).
    public init(config: LlamaConfig, factory: ParameterFactory) {
        self.config = config
        model = LlamaModel(config: config, factory: factory)
        languageModelHead = config.tieWordEmbeddings
            ? nil : Linear(inFeatures: config.hiddenSize, outFeatures: config.vocabSize, bias: false, factory: factory)
        super.init()
    }

    /// The `[V, D]` matrix that maps hidden states to logits.
    public var outputWeight: Tensor { languageModelHead?.weight ?? model.tokenEmbedding.weight }

    /// Logits for a batch of token ids.
    /// - Parameters:
    ///   - ids: `[B, T]` int64 or int32.
    ///   - attentionMask: `[B, S]`, 1 for real tokens and 0 for padding, over cached and new tokens
    ///     (left or right padding); all ones when `nil`.
    ///   - cache: a KV cache to extend (incremental decoding).
    /// - Returns: `[B, T, V]` float32 logits.
    ///
    /// Positions follow the mask — each real token's position is the number of real tokens before
    /// it, as `generate` in transformers computes them — so a padded row's real tokens get exactly
    /// the logits they would get alone.
    public func callAsFunction(_ ids: Tensor, attentionMask: Tensor? = nil, cache: KVCache? = nil) -> Tensor {
        logits(hiddenStates: hiddenStates(ids, attentionMask: attentionMask, cache: cache))
    }

    /// The final-normed hidden states `[B, T, D]` (for reward heads and feature extraction).
    public func hiddenStates(_ ids: Tensor, attentionMask: Tensor? = nil, cache: KVCache? = nil) -> Tensor {
        ensure(ids.rank == 2, "input_ids must be [B, T], got \(ids.shape)")
        let embeddings = model.tokenEmbedding(ids)                                     // (B, T, D)
        let (positions, mask) = Self.positionsAndMask(batch: ids.shape[0], newTokens: ids.shape[1],
                                                      attentionMask: attentionMask, cachedLength: cache?.length ?? 0)
        return model(embeddings: embeddings, positions: positions, mask: mask, cache: cache)
    }

    /// Projects hidden states `[B, T, D]` to logits `[B, T, V]`.
    public func logits(hiddenStates: Tensor) -> Tensor {
        hiddenStates.linear(weight: outputWeight)
    }

    /// Rotary positions and the attention mask for `newTokens` tokens after `cachedLength` cached ones.
    static func positionsAndMask(batch: Int, newTokens: Int, attentionMask: Tensor?, cachedLength: Int)
        -> (positions: [[Int]], mask: AttentionMask) {
        guard let attentionMask else {
            let row = Array(cachedLength..<(cachedLength + newTokens))
            return (Array(repeating: row, count: batch), AttentionMask(isCausal: true, causalOffset: cachedLength))
        }
        let total = cachedLength + newTokens
        ensure(attentionMask.shape == [batch, total],
               "attention_mask must be [B, S] = [\(batch), \(total)] (cached + new tokens), got \(attentionMask.shape)")
        let flags = attentionMask.integers()
        var positions: [[Int]] = []
        for row in 0..<batch {
            var count = 0
            var rowPositions: [Int] = []
            for column in 0..<total {
                let real = flags[row * total + column] != 0
                // A real token's position is the number of real tokens before it; padding gets the
                // previous real token's (transformers: cumsum(mask) − 1, clamped at 0).
                if column >= cachedLength { rowPositions.append(real ? count : max(count - 1, 0)) }
                if real { count += 1 }
            }
            positions.append(rowPositions)
        }
        return (positions, AttentionMask(isCausal: true, causalOffset: cachedLength, keyPadding: attentionMask))
    }
}

extension RotaryEmbedding {
    /// The rotary tables a Llama configuration asks for (default or llama3-scaled frequencies).
    public init(config: LlamaConfig) {
        let rope = config.rope
        var scaling: RotaryScaling? = nil
        if rope.ropeType == "llama3", let factor = rope.factor, let low = rope.lowFreqFactor,
           let high = rope.highFreqFactor, let original = rope.originalMaxPositionEmbeddings {
            scaling = RotaryScaling(factor: factor, lowFrequencyFactor: low, highFrequencyFactor: high,
                                    originalMaxPositionEmbeddings: original)
        }
        ensure(rope.ropeType == "default" || scaling != nil,
               "rope_type '\(rope.ropeType)' is not implemented (VLMKit implements 'default' and 'llama3')")
        self.init(headDimension: config.headDim, base: rope.ropeTheta, scaling: scaling)
    }
}
