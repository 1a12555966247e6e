import TensorCore

/// Relative L2 error `‖a − b‖ / ‖b‖` and max absolute difference of two equal-length arrays.
public func errors(_ actual: [Double], _ expected: [Double]) -> (relativeL2: Double, maxAbs: Double) {
    precondition(actual.count == expected.count, "compared arrays differ in length: \(actual.count) vs \(expected.count)")
    var diff2 = 0.0, ref2 = 0.0, maxAbs = 0.0
    for (a, b) in zip(actual, expected) {
        let d = a - b
        if d.isNaN || a.isNaN != b.isNaN { return (.nan, .nan) }
        diff2 += d * d
        ref2 += b * b
        maxAbs = max(maxAbs, abs(d))
    }
    return (ref2 > 0 ? (diff2 / ref2).squareRoot() : diff2.squareRoot(), maxAbs)
}

/// Whether `actual` matches `expected` in shape and, element-wise, within `atol + rtol·|expected|`.
/// Returns a description of the first mismatch, or `nil` when they match.
public func closeness(_ actual: Tensor, _ expected: Tensor, rtol: Double = 1e-5, atol: Double = 1e-6) -> String? {
    guard actual.shape == expected.shape else { return "shapes differ: \(actual.shape) vs expected \(expected.shape)" }
    let a = actual.doubles(), e = expected.doubles()
    for i in 0..<a.count where !(abs(a[i] - e[i]) <= atol + rtol * abs(e[i])) {
        let (rel, maxAbs) = errors(a, e)
        return "element \(i): \(a[i]) vs expected \(e[i]) (max abs diff \(maxAbs), relative L2 \(rel))\n"
            + "actual   \(a.prefix(8))\nexpected \(e.prefix(8))"
    }
    return nil
}

/// Finite-difference gradient check in float64.
///
/// `function` maps the inputs to a tensor; the check compares the analytic gradient of
/// `sum(function(inputs) · weights)` (random fixed weights, so every output element matters) with
/// central differences `(f(x+h) − f(x−h)) / 2h` for every element of every input that requires
/// gradients. Returns a description of the worst mismatch, or `nil` when all agree within tolerance.
public func gradientCheck(_ inputs: [Tensor], epsilon: Double = 1e-6, tolerance: Double = 1e-6,
                          seed: UInt64 = 7, _ function: ([Tensor]) -> Tensor) -> String? {
    for input in inputs where input.requiresGrad {
        precondition(input.dtype == .float64, "gradientCheck needs float64 inputs, got \(input.dtype) \(input.shape)")
        input.grad = nil
    }
    let probe = function(inputs)
    var generator = RandomGenerator(seed: seed)
    let weights = Tensor((0..<probe.elementCount).map { _ in generator.nextUniform() * 2 - 1 }, shape: probe.shape)
    let objective = { (outputs: Tensor) -> Double in
        zip(outputs.doubles(), weights.doubles()).reduce(0) { $0 + $1.0 * $1.1 }
    }
    (probe * weights).sum().backward()

    var worst: (error: Double, message: String)? = nil
    for (inputIndex, input) in inputs.enumerated() where input.requiresGrad {
        guard let analytic = input.grad?.doubles() else { return "input \(inputIndex) \(input.shape) received no gradient" }
        precondition(input.isContiguous, "gradientCheck needs contiguous inputs")
        let data = input.doublePointer
        for i in 0..<input.elementCount {
            let original = data[i]
            data[i] = original + epsilon
            let plus = withNoGrad { objective(function(inputs)) }
            data[i] = original - epsilon
            let minus = withNoGrad { objective(function(inputs)) }
            data[i] = original
            let numeric = (plus - minus) / (2 * epsilon)
            let error = abs(numeric - analytic[i]) / max(1, abs(numeric), abs(analytic[i]))
            if error > tolerance && error > (worst?.error ?? 0) {
                worst = (error, "input \(inputIndex) \(input.shape) element \(i): analytic \(analytic[i]) vs numeric \(numeric)")
            }
        }
    }
    return worst.map { "gradient mismatch (error \($0.error)): \($0.message)" }
}

/// The seeded generator of test data and corruption loops: TensorCore's SplitMix64.
public typealias SeededGenerator = RandomGenerator

/// A float64 tensor of uniform values in `range`, requiring gradients, for gradient checks.
public func randomDoubles(_ shape: [Int], in range: ClosedRange<Double> = -1...1, seed: UInt64,
                          requiresGrad: Bool = true) -> Tensor {
    var generator = RandomGenerator(seed: seed)
    let values = (0..<Shape.elementCount(shape)).map { _ in range.lowerBound + generator.nextUniform() * (range.upperBound - range.lowerBound) }
    return Tensor(values, shape: shape, requiresGrad: requiresGrad)
}

/// A float32 tensor of uniform values in `range`.
public func randomFloats(_ shape: [Int], in range: ClosedRange<Double> = -1...1, seed: UInt64,
                         requiresGrad: Bool = false) -> Tensor {
    var generator = RandomGenerator(seed: seed)
    let values = (0..<Shape.elementCount(shape)).map { _ in Float(range.lowerBound + generator.nextUniform() * (range.upperBound - range.lowerBound)) }
    return Tensor(values, shape: shape, requiresGrad: requiresGrad)
}
