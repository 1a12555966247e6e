/// Rotary position embeddings in Hugging Face's `rotate_half` convention (as `LlamaForCausalLM`
/// and Mllama's text model): the head width splits into halves `x = [x₁, x₂]`, and frequency `i`
/// rotates the pair `(x₁[i], x₂[i])` by `position · θᵢ`.
///
/// Shapes: B batch, H heads, T positions, Dh head width.

/// Llama 3's frequency-dependent rescaling of the rotary frequencies (`rope_type: "llama3"`):
/// wavelengths longer than `originalMaxPositionEmbeddings / lowFrequencyFactor` are stretched by
/// `factor`, those shorter than `originalMaxPositionEmbeddings / highFrequencyFactor` are kept, and
/// the band between is interpolated smoothly.
public struct RotaryScaling: Sendable, Equatable {
    public var factor: Double
    public var lowFrequencyFactor: Double
    public var highFrequencyFactor: Double
    public var originalMaxPositionEmbeddings: Int

    public init(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalMaxPositionEmbeddings: Int) {
        ensure(factor > 0 && highFrequencyFactor > lowFrequencyFactor && lowFrequencyFactor > 0,
                     "RotaryScaling: need factor > 0 and high_freq_factor > low_freq_factor > 0, got \(factor), \(highFrequencyFactor), \(lowFrequencyFactor)")
        self.factor = factor
        self.lowFrequencyFactor = lowFrequencyFactor
        self.highFrequencyFactor = highFrequencyFactor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }
}

/// The inverse frequencies of a rotary embedding, and the cos/sin tables they give.
///
/// Everything is computed the way transformers computes it — in float32, operation by operation
/// (`_compute_default_rope_parameters`, `_compute_llama3_parameters`, `LlamaRotaryEmbedding`) — so
/// the tables match Hugging Face's to about one float32 ulp, also at positions far beyond
/// `originalMaxPositionEmbeddings`.
public struct RotaryEmbedding: Sendable {
    /// The head width Dh (even).
    public let headDimension: Int
    /// `θᵢ` for `i` in `0..<Dh/2` (float32 values, widened).
    public let inverseFrequencies: [Double]

    /// - Parameters:
    ///   - headDimension: Dh, the width the rotation applies to (even).
    ///   - base: `rope_theta` (500 000 for Llama 3).
    ///   - scaling: Llama 3 frequency scaling, or `nil` for plain RoPE.
    public init(headDimension: Int, base: Double, scaling: RotaryScaling? = nil) {
        ensure(headDimension > 0 && headDimension % 2 == 0, "RotaryEmbedding: head dimension must be even, got \(headDimension)")
        self.headDimension = headDimension
        // 1 / base^(arange(0, Dh, 2) / Dh), each step rounded to float32 as torch does.
        var frequencies: [Float] = stride(from: 0, to: headDimension, by: 2).map { i in
            1 / Float.pow(Float(base), Float(i) / Float(headDimension))
        }
        if let scaling { frequencies = frequencies.map { Self.llama3Scaled($0, scaling) } }
        inverseFrequencies = frequencies.map(Double.init)
    }

    /// One frequency after Llama 3 scaling, with transformers' float32 operations (`2π / θ` is
    /// `θ.reciprocal() · 2π` in torch, and so on).
    private static func llama3Scaled(_ frequency: Float, _ s: RotaryScaling) -> Float {
        let lowFrequencyWavelength = Double(s.originalMaxPositionEmbeddings) / s.lowFrequencyFactor
        let highFrequencyWavelength = Double(s.originalMaxPositionEmbeddings) / s.highFrequencyFactor
        let wavelength = (1 / frequency) * Float(2 * Double.pi)
        if wavelength < Float(highFrequencyWavelength) { return frequency }
        if wavelength > Float(lowFrequencyWavelength) { return frequency / Float(s.factor) }
        let smooth = ((1 / wavelength) * Float(s.originalMaxPositionEmbeddings) - Float(s.lowFrequencyFactor))
            / Float(s.highFrequencyFactor - s.lowFrequencyFactor)
        return (1 - smooth) * frequency / Float(s.factor) + smooth * frequency
    }

    /// The cos and sin tables for `positions`, each `[T, Dh]`: row `t` holds
    /// `[cos(p·θ), cos(p·θ)]` (the frequencies repeated for both halves) with `p = positions[t]`.
    /// The angles `p·θᵢ` are float32 products, as in transformers.
    ///
    /// For per-sample positions (left padding), pass one position list per sample (`[[Int]]`).
    public func cosSin(positions: [Int], dtype: DType = .float32) -> (cos: Tensor, sin: Tensor) {
        ensure(dtype.isComputeType, "RotaryEmbedding.cosSin: dtype must be float32 or float64, got \(dtype)")
        let half = headDimension / 2
        var cosines = [Double](repeating: 0, count: positions.count * headDimension)
        var sines = cosines
        let frequencies = inverseFrequencies.map(Float.init)
        for (t, position) in positions.enumerated() {
            for i in 0..<half {
                let angle = Double(Float(position) * frequencies[i])
                // Correctly rounded float32 cos/sin of the float32 angle.
                let c = Double(Float(Double.cos(angle))), s = Double(Float(Double.sin(angle)))
                cosines[t * headDimension + i] = c
                cosines[t * headDimension + half + i] = c
                sines[t * headDimension + i] = s
                sines[t * headDimension + half + i] = s
            }
        }
        let shape = [positions.count, headDimension]
        let cos = Tensor(cosines, shape: shape), sin = Tensor(sines, shape: shape)
        return (cos.converted(to: dtype), sin.converted(to: dtype))
    }

    /// Per-sample tables `[B, T, Dh]` for batches whose rows sit at different positions (left
    /// padding): row `b` holds ``cosSin(positions:dtype:)`` of `positions[b]`.
    public func cosSin(positions: [[Int]], dtype: DType = .float32) -> (cos: Tensor, sin: Tensor) {
        let length = positions.first?.count ?? 0
        ensure(positions.allSatisfy { $0.count == length },
                     "RotaryEmbedding.cosSin: every sample needs the same number of positions, got \(positions.map(\.count))")
        let (cos, sin) = cosSin(positions: positions.flatMap { $0 }, dtype: dtype)
        let shape = [positions.count, length, headDimension]  // (B, T, Dh)
        return (cos.reshaped(shape), sin.reshaped(shape))
    }
}

/// Rotates `x` by the angles whose cos and sin are given: `x·cos + rotate_half(x)·sin`, with
/// `rotate_half([x₁, x₂]) = [−x₂, x₁]`.
///
/// - Parameters:
///   - x: `[B, H, T, Dh]`, any strides (queries or keys after their projection).
///   - cos: `[T, Dh]` shared by the batch, or `[B, T, Dh]` per sample (left-padded batches give
///     each row its own positions). See ``RotaryEmbedding/cosSin(positions:dtype:)``.
///   - sin: the same shape as `cos`.
/// - Returns: `[B, H, T, Dh]`, contiguous.
///
/// The tables are constants (they must not require gradients). Saves for backward: cos and sin.
/// Backward: the gradient rotated by the opposite angles,
/// `dx₁ = g₁·cos₁ + g₂·sin₂`, `dx₂ = g₂·cos₂ − g₁·sin₁`.
public func applyRotaryEmbedding(_ x: Tensor, cos: Tensor, sin: Tensor) -> Tensor {
    ensure(x.rank == 4, "applyRotaryEmbedding: x must be [B, H, T, Dh], got \(x.shape)")
    x.requireComputeType("applyRotaryEmbedding")
    let (b, t, dh) = (x.shape[0], x.shape[2], x.shape[3])
    ensure(dh % 2 == 0, "applyRotaryEmbedding: head width must be even, got \(dh)")
    ensure(cos.shape == sin.shape && (cos.shape == [t, dh] || cos.shape == [b, t, dh]),
                 "applyRotaryEmbedding: cos \(cos.shape) and sin \(sin.shape) must both be [T, Dh] = [\(t), \(dh)] or [B, T, Dh] for x \(x.shape)")
    ensure(!cos.requiresGrad && !sin.requiresGrad, "applyRotaryEmbedding: cos and sin tables are constants and must not require gradients")
    let cosTable = cos.detached().converted(to: x.dtype).contiguousStorageView().detached()
    let sinTable = sin.detached().converted(to: x.dtype).contiguousStorageView().detached()
    let out = Tensor(uninitialized: x.shape, dtype: x.dtype)  // written in full
    dispatchFloat(x.dtype, "applyRotaryEmbedding",
                  float: { rotate(x, cosTable, sinTable, into: out, inverse: false, Float.self) },
                  double: { rotate(x, cosTable, sinTable, into: out, inverse: false, Double.self) })
    if Autograd.needsGraph(x) {
        // Saves cos and sin.
        out.recordOperation("applyRotaryEmbedding", inputs: [x]) { g in
            let dx = Tensor(uninitialized: g.shape, dtype: g.dtype)
            dispatchFloat(g.dtype, "applyRotaryEmbedding backward",
                          float: { rotate(g, cosTable, sinTable, into: dx, inverse: true, Float.self) },
                          double: { rotate(g, cosTable, sinTable, into: dx, inverse: true, Double.self) })
            return [dx]
        }
    }
    return out
}

/// `out = x·cos + rotate_half(x)·sin` (or, when `inverse`, the transposed map used by the
/// backward) for strided `x` `[B, H, T, Dh]` and contiguous tables `[T, Dh]` or `[B, T, Dh]`.
private func rotate<T: ComputeScalar>(_ x: Tensor, _ cos: Tensor, _ sin: Tensor, into out: Tensor, inverse: Bool, _: T.Type) {
    let (heads, t, dh) = (x.shape[1], x.shape[2], x.shape[3])
    let half = dh / 2
    let source = x.pointer(as: T.self), destination = out.pointer(as: T.self)
    let c = cos.pointer(as: T.self), s = sin.pointer(as: T.self)
    let perSample = cos.rank == 3
    let st = x.strides
    Parallel.forEachRange(out.elementCount / max(dh, 1), grain: max(1, 16_384 / max(dh, 1))) { rows in
        for row in rows {
            let (bh, position) = row.quotientAndRemainder(dividingBy: t)
            let (b, h) = bh.quotientAndRemainder(dividingBy: heads)
            let input = source + b * st[0] + h * st[1] + position * st[2]
            let step = st[3]
            let tableRow = (perSample ? b * t + position : position) * dh
            let cr = c + tableRow, sr = s + tableRow
            let output = destination + row * dh
            for i in 0..<half {
                let x1 = input[i * step], x2 = input[(i + half) * step]
                if inverse {
                    output[i] = x1 * cr[i] + x2 * sr[i + half]
                    output[i + half] = x2 * cr[i + half] - x1 * sr[i]
                } else {
                    output[i] = x1 * cr[i] - x2 * sr[i]
                    output[i + half] = x2 * cr[i + half] + x1 * sr[i + half]
                }
            }
        }
    }
}
