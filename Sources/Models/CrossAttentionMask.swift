import TensorCore

// Which image tokens each text token may attend to in Mllama's cross-attention layers.
//
// Shapes: B batch, T text tokens, N images per row, X tiles per image, L tokens per tile,
// S = N·X·L image tokens.

/// What a cross-attention layer does for a text token that may see no image tile at all (the
/// tokens before the first `<|image|>`, padding).
public enum CrossAttentionMasking: Sendable, Equatable {
    /// Meta's and torchtune's fusion layer: such a row gets no cross-attention contribution —
    /// both the attention output and the MLP output are zero, so the row computes exactly what
    /// the text model alone computes. The default.
    case meta
    /// transformers 4.45.2: `_prepare_cross_attention_mask` multiplies a fully masked row's
    /// additive mask by 0, so that row attends, unmasked, to ALL S image tokens (padded tiles and
    /// images included), and the layer adds `tanh(attn_gate)·attention`; only the MLP output is
    /// zeroed. For parity with transformers' logits.
    case huggingface
}

/// A cross-attention mask prepared for the attention kernel.
public struct PreparedCrossAttentionMask {
    /// `[B, 1, T, S]`: 0 where a text token sees an image token, −∞ where it does not; `nil` when
    /// every token sees every image token.
    public let additive: Tensor?
    /// `[B, T, 1]`: 1 for a text token that sees at least one image token, 0 otherwise
    /// (`full_text_row_masked_out_mask`); `nil` when all are 1.
    public let rowVisible: Tensor?

    /// Expands the processor's tile mask to image tokens.
    /// - Parameters:
    ///   - tiles: `cross_attention_mask` `[B, T, N, X]`, nonzero where text token t may see tile x
    ///     of image n (the processor sets it from each `<|image|>` token onwards, for the image's
    ///     real tiles only).
    ///   - tokensPerTile: L.
    ///   - masking: what a row that sees nothing gets (see ``CrossAttentionMasking``).
    ///   - dtype: the compute dtype.
    public init(tiles: Tensor, tokensPerTile: Int, masking: CrossAttentionMasking, dtype: DType) {
        ensure(tiles.rank == 4, "cross_attention_mask must be [B, T, N, X], got \(tiles.shape)")
        let (b, t, n, x) = (tiles.shape[0], tiles.shape[1], tiles.shape[2], tiles.shape[3])
        let s = n * x * tokensPerTile
        let flags = tiles.dtype.isFloatingPoint ? tiles.doubles().map { $0 != 0 } : tiles.integers().map { $0 != 0 }
        let additive = Tensor(zeros: [b, 1, t, s], dtype: dtype)
        let visible = Tensor(zeros: [b, t, 1], dtype: dtype)
        func fill<T: ComputeScalar & BinaryFloatingPoint>(_ additive: UnsafeMutablePointer<T>, _ visible: UnsafeMutablePointer<T>) {
            for row in 0..<(b * t) {
                let rowFlags = flags[(row * n * x)..<((row + 1) * n * x)]
                let seesAny = rowFlags.contains(true)
                visible[row] = seesAny ? 1 : 0
                // A row that sees nothing: Meta hides every key (the kernel then outputs 0);
                // transformers hides none.
                if !seesAny && masking == .huggingface { continue }
                for (tile, flag) in rowFlags.enumerated() where !flag {
                    let start = row * s + tile * tokensPerTile
                    for j in start..<(start + tokensPerTile) { additive[j] = -.infinity }
                }
            }
        }
        if dtype == .float64 { fill(additive.doublePointer, visible.doublePointer) } else { fill(additive.floatPointer, visible.floatPointer) }
        self.additive = additive
        self.rowVisible = visible
    }

    /// No mask: every text token sees every image token and no row is zeroed (transformers'
    /// behaviour when `cross_attention_mask` is not given).
    public init() {
        additive = nil
        rowVisible = nil
    }
}
