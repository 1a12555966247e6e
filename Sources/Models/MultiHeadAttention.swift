import Checkpoint
import Layers
import TensorCore

// The attention layer every VLMKit model uses: Llama's self-attention (rotary, grouped-query, KV
// cache), Mllama's text cross-attention (per-head RMSNorm on queries and keys, keys from the
// image), Mllama's and CLIP's vision self-attention (no rotary; CLIP with biases and `out_proj`).
// What differs is configuration and the call, not the class: project → split heads → attend →
// merge heads → output projection is written once, here.
//
// Shapes: B batch, T queries, S keys, D model width, H heads, K kv heads, Dh head width.

/// Multi-head (optionally grouped-query) attention with transformers' parameter names:
/// `q_proj`, `k_proj`, `v_proj`, the output projection (`o_proj`, or CLIP's `out_proj`), and
/// optional per-head `q_norm` / `k_norm`.
public final class MultiHeadAttention: Module {
    override public class var checkpointKeys: [String: String] {
        ["queryProjection": "q_proj", "keyProjection": "k_proj", "valueProjection": "v_proj",
         "outputProjection": "o_proj", "queryNorm": "q_norm", "keyNorm": "k_norm"]
    }

    /// How an attention layer is shaped and named.
    public struct Layout: Sendable {
        public var width: Int
        public var heads: Int
        public var kvHeads: Int
        public var headDimension: Int
        /// Biases on the query, key and value projections.
        public var projectionBias: Bool
        /// A bias on the output projection.
        public var outputBias: Bool
        /// The output projection's checkpoint key (`o_proj`; CLIP's is `out_proj`).
        public var outputKey: String
        /// When set, RMSNorm of this ε over each head's queries and keys (Mllama's cross-attention).
        public var headNormEpsilon: Double?

        public init(width: Int, heads: Int, kvHeads: Int? = nil, headDimension: Int? = nil, projectionBias: Bool = false,
                    outputBias: Bool? = nil, outputKey: String = "o_proj", headNormEpsilon: Double? = nil) {
            self.width = width
            self.heads = heads
            self.kvHeads = kvHeads ?? heads
            self.headDimension = headDimension ?? width / heads
            self.projectionBias = projectionBias
            self.outputBias = outputBias ?? projectionBias
            self.outputKey = outputKey
            self.headNormEpsilon = headNormEpsilon
        }
    }

    let queryProjection: Linear
    let keyProjection: Linear
    let valueProjection: Linear
    let outputProjection: Linear
    let queryNorm: RMSNorm?
    let keyNorm: RMSNorm?
    public let layout: Layout

    public init(_ layout: Layout, factory: ParameterFactory) {
        self.layout = layout
        let (d, h, k, dh) = (layout.width, layout.heads, layout.kvHeads, layout.headDimension)
        queryProjection = Linear(inFeatures: d, outFeatures: h * dh, bias: layout.projectionBias, factory: factory)
        keyProjection = Linear(inFeatures: d, outFeatures: k * dh, bias: layout.projectionBias, factory: factory)
        valueProjection = Linear(inFeatures: d, outFeatures: k * dh, bias: layout.projectionBias, factory: factory)
        outputProjection = Linear(inFeatures: h * dh, outFeatures: d, bias: layout.outputBias, factory: factory)
        queryNorm = layout.headNormEpsilon.map { RMSNorm(dimension: dh, epsilon: $0, factory: factory) }
        keyNorm = layout.headNormEpsilon.map { RMSNorm(dimension: dh, epsilon: $0, factory: factory) }
        super.init()
    }

    /// The children under their checkpoint keys, the output projection under ``Layout/outputKey``.
    override public func namedChildren() -> [(String, Module)] {
        super.namedChildren().map { $0.0 == "o_proj" ? (layout.outputKey, $0.1) : $0 }
    }

    /// `[B, T, count·Dh] → [B, count, T, Dh]`, normed per head by `norm` when given.
    private func splitHeads(_ x: Tensor, count: Int, norm: RMSNorm?) -> Tensor {
        var split = x.reshaped([x.shape[0], x.shape[1], count, layout.headDimension])    // (B, T, count, Dh)
        if let norm { split = norm(split) }
        return split.permuted([0, 2, 1, 3])                                                 // (B, count, T, Dh)
    }

    /// Queries `[B, H, T, Dh]` of `x` `[B, T, D]` (normed when the layout says so).
    public func queries(_ x: Tensor) -> Tensor { splitHeads(queryProjection(x), count: layout.heads, norm: queryNorm) }

    /// Keys (normed when the layout says so) and values `[B, K, S, Dh]` of `source` `[B, S, D]`.
    public func keysValues(_ source: Tensor) -> (keys: Tensor, values: Tensor) {
        (splitHeads(keyProjection(source), count: layout.kvHeads, norm: keyNorm),
         splitHeads(valueProjection(source), count: layout.kvHeads, norm: nil))
    }

    /// Attends and merges the heads: queries `[B, H, T, Dh]` over keys and values `[B, K, S, Dh]`
    /// → `[B, T, D]` through the output projection.
    public func attend(queries: Tensor, keys: Tensor, values: Tensor, mask: AttentionMask) -> Tensor {
        let (b, t) = (queries.shape[0], queries.shape[2])
        let attended = scaledDotProductAttention(query: queries, key: keys, value: values, mask: mask)   // (B, H, T, Dh)
        return outputProjection(attended.permuted([0, 2, 1, 3]).reshaped([b, t, layout.heads * layout.headDimension]))
    }

    /// Self-attention without positions (the vision towers): `[B, T, D] → [B, T, D]`.
    public func callAsFunction(_ x: Tensor, mask: AttentionMask) -> Tensor {
        let (keys, values) = keysValues(x)
        return attend(queries: queries(x), keys: keys, values: values, mask: mask)
    }

    /// Self-attention with rotary positions and an optional KV cache (Llama).
    /// - Parameters:
    ///   - x: `[B, T, D]`.
    ///   - rotary: cos and sin tables, `[B, T, Dh]`.
    ///   - mask: causal with the cache's offset, plus key padding `[B, S]`.
    ///   - cache: this layer's KV cache, appended to when given.
    public func callAsFunction(_ x: Tensor, rotary: (cos: Tensor, sin: Tensor), mask: AttentionMask,
                               cache: KVCache.Layer?) -> Tensor {
        let q = applyRotaryEmbedding(queries(x), cos: rotary.cos, sin: rotary.sin)          // (B, H, T, Dh)
        var (k, v) = keysValues(x)                                                          // (B, K, T, Dh)
        k = applyRotaryEmbedding(k, cos: rotary.cos, sin: rotary.sin)
        if let cache { (k, v) = cache.append(keys: k, values: v) }                          // (B, K, S, Dh)
        return attend(queries: q, keys: k, values: v, mask: mask)                           // (B, T, D)
    }
}
