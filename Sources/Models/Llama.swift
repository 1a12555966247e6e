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

    let selfAttention: MultiHeadAttention
    let mlp: LlamaMLP
    let inputNorm: RMSNorm
    let postAttentionNorm: RMSNorm

    init(config: LlamaConfig, factory: ParameterFactory) {
        selfAttention = MultiHeadAttention(.selfAttention(config), factory: factory)
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
        norm = config.finalNorm(factory: factory)
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
        languageModelHead = config.languageModelHead(factory: factory)
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

extension LlamaConfig {
    /// The RMSNorm after the last decoder layer (`norm`), for Llama's and Mllama's text towers.
    func finalNorm(factory: ParameterFactory) -> RMSNorm {
        RMSNorm(dimension: hiddenSize, epsilon: rmsNormEps, factory: factory)
    }

    /// The `[V, D]` `lm_head`, or `nil` when `tie_word_embeddings` ties it to the embedding table.
    func languageModelHead(factory: ParameterFactory) -> Linear? {
        tieWordEmbeddings ? nil : Linear(inFeatures: hiddenSize, outFeatures: vocabSize, bias: false, factory: factory)
    }
}

extension MultiHeadAttention.Layout {
    /// Llama's grouped-query self-attention (`attention_bias` on all four projections).
    public static func selfAttention(_ config: LlamaConfig) -> Self {
        Self(width: config.hiddenSize, heads: config.numAttentionHeads, kvHeads: config.numKeyValueHeads,
             headDimension: config.headDim, projectionBias: config.attentionBias)
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
