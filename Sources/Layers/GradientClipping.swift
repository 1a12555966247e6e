import TensorCore

/// Scales gradients so that their global L2 norm is at most `maxNorm`, as
/// `torch.nn.utils.clip_grad_norm_`: with `n = ‖(g₁, …, gₖ)‖₂`, every gradient is multiplied by
/// `min(1, maxNorm / (n + 1e-6))`.
///
/// - Returns: the norm before clipping (NaN or infinity when a gradient is not finite; then the
///   gradients are left as they are so that the caller can skip the step and report it).
@discardableResult
public func clipGradientNorm(_ parameters: [(name: String, tensor: Tensor)], maxNorm: Double) -> Double {
    var squaredSum = 0.0
    for (_, tensor) in parameters {
        guard let gradient = tensor.grad?.contiguous() else { continue }
        squaredSum += dispatchFloat(gradient.dtype, "clipGradientNorm",
                                    float: { sumOfSquares(gradient.pointer(as: Float.self), gradient.elementCount) },
                                    double: { sumOfSquares(gradient.pointer(as: Double.self), gradient.elementCount) })
    }
    let norm = squaredSum.squareRoot()
    guard norm.isFinite else { return norm }
    let coefficient = maxNorm / (norm + 1e-6)
    if coefficient < 1 {
        for (_, tensor) in parameters {
            guard let gradient = tensor.grad else { continue }
            tensor.grad = withNoGrad { gradient * coefficient }  // a new buffer: gradients may be shared views
        }
    }
    return norm
}

/// Σ x² accumulated in double precision, in blocks summed in the element type so the loop vectorises.
private func sumOfSquares<T: ComputeScalar>(_ x: UnsafePointer<T>, _ count: Int) -> Double {
    var total = 0.0
    var start = 0
    while start < count {
        let end = min(start + 4096, count)
        var block: T = 0
        for i in start..<end { block += x[i] * x[i] }
        total += Double(block)
        start = end
    }
    return total
}
