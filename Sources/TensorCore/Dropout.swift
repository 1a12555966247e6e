/// Inverted dropout.

extension Tensor {
    /// Inverted dropout: while training, each element is zeroed with probability `probability` and
    /// the survivors are scaled by `1/(1 − probability)`, so the expected value is unchanged.
    /// Returns `self` unchanged when not training or when `probability` is 0; with probability 1
    /// every element is zeroed.
    ///
    /// The mask comes from `generator` in row-major element order, so a seeded generator reproduces it.
    /// Saves the scaled mask `m` (0 or `1/(1 − p)` per element). Backward: `dx = g·m`.
    public func dropout(probability: Double, training: Bool, generator: inout RandomGenerator) -> Tensor {
        ensure((0...1).contains(probability), "dropout probability must lie in [0, 1], got \(probability)")
        guard training && probability > 0 else { return self }
        requireComputeType("dropout")
        let keep = probability < 1 ? 1 / (1 - probability) : 0
        let mask = Tensor(zeros: shape, dtype: dtype)
        switch dtype {
        case .float32:
            let p = mask.floatPointer, value = Float(keep)
            for i in 0..<elementCount where generator.nextUniform() >= probability { p[i] = value }
        default:
            let p = mask.doublePointer
            for i in 0..<elementCount where generator.nextUniform() >= probability { p[i] = keep }
        }
        let out = withNoGrad { self * mask }
        guard Autograd.needsGraph(self) else { return out }
        out.recordOperation("dropout", inputs: [self]) { g in [g * mask] }
        return out
    }
}
