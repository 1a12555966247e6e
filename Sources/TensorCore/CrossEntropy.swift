/// Cross-entropy and per-token log-probabilities over a vocabulary, fused for large `V`.
///
/// The forward keeps one log-sum-exp per row, never a `[N, V]` log-softmax; the backward recomputes
/// the softmax row by row straight into the gradient buffer. Rows are split across cores.

/// How per-token losses are combined.
public enum LossReduction: Sendable {
    /// The weighted sum divided by the sum of the weights of non-ignored tokens (their count when
    /// unweighted, as PyTorch). With every token ignored the result is 0, not NaN.
    case mean
    /// The weighted sum over tokens.
    case sum
    /// No reduction: one loss per token, shaped like the targets (0 at ignored tokens).
    case none
}

/// Cross-entropy of `logits` `[N.., V]` against integer `targets` `[N..]` (int64 or int32):
/// `lossᵢ = wᵢ·(log Σⱼ exp(logitsᵢⱼ) − logitsᵢ,targetᵢ)`, as `torch.nn.functional.cross_entropy`.
///
/// Tokens whose target equals `ignoreIndex` contribute nothing (their weight counts as 0); any other
/// target outside `0..<V` traps with a message naming it. `weights` (`[N..]`, floating-point) scales
/// each token's loss and is treated as a constant (it gets no gradient).
///
/// Saves the logits (not copied when contiguous) and one log-sum-exp per row.
/// Backward: `dlogitsᵢ = cᵢ·(softmax(logitsᵢ) − onehot(targetᵢ))`, with `cᵢ = wᵢ·gᵢ` (`.none`),
/// `wᵢ·g` (`.sum`) or `wᵢ·g / Σw` (`.mean`).
public func crossEntropy(logits: Tensor, targets: Tensor, ignoreIndex: Int = -100, weights: Tensor? = nil,
                         reduction: LossReduction = .mean) -> Tensor {
    let rows = TargetRows(logits: logits, targets: targets, ignoreIndex: ignoreIndex, operation: "crossEntropy")
    var tokenWeights = rows.targets.map { $0 == ignoreIndex ? 0.0 : 1.0 }
    if let weights {
        ensure(weights.shape == targets.shape,
                     "crossEntropy weights of shape \(weights.shape) do not match the targets' shape \(targets.shape)")
        ensure(weights.dtype.isFloatingPoint, "crossEntropy weights must be floating-point, got \(weights.dtype)")
        for (i, w) in weights.doubles().enumerated() where tokenWeights[i] != 0 { tokenWeights[i] = w }
    }
    let logProbabilities = rows.logProbabilities.doubles()
    let losses = zip(tokenWeights, logProbabilities).map { w, logp in w == 0 ? 0 : -w * logp }
    let dtype = logits.dtype
    let out: Tensor
    var denominator = 1.0
    switch reduction {
    case .none:
        out = Tensor(losses, shape: targets.shape).converted(to: dtype)
    case .sum:
        out = Tensor(scalar: losses.reduce(0, +), dtype: dtype)
    case .mean:
        denominator = tokenWeights.reduce(0, +)
        out = Tensor(scalar: denominator == 0 ? 0 : losses.reduce(0, +) / denominator, dtype: dtype)
    }
    guard Autograd.needsGraph(logits) else { return out }
    out.recordOperation("crossEntropy", inputs: [logits]) { g in
        let incoming = g.doubles()
        let coefficients: [Double]
        switch reduction {
        case .none: coefficients = zip(tokenWeights, incoming).map { $0 * $1 }
        case .sum: coefficients = tokenWeights.map { $0 * incoming[0] }
        case .mean: coefficients = tokenWeights.map { denominator == 0 ? 0 : $0 * incoming[0] / denominator }
        }
        return [rows.logitGradient(coefficients: coefficients)]
    }
    return out
}

/// `log p(targetᵢ) = logitsᵢ,targetᵢ − log Σⱼ exp(logitsᵢⱼ)` for `logits` `[N.., V]` and integer
/// `targets` `[N..]`, giving `[N..]` in the logits' dtype (0 where the target is `ignoreIndex`).
/// For DPO, reward models and rejection sampling; fused like ``crossEntropy(logits:targets:ignoreIndex:weights:reduction:)``.
///
/// Saves the logits and one log-sum-exp per row.
/// Backward: `dlogitsᵢ = gᵢ·(onehot(targetᵢ) − softmax(logitsᵢ))`, zero at ignored positions.
public func logProbabilities(logits: Tensor, targets: Tensor, ignoreIndex: Int = -100) -> Tensor {
    let rows = TargetRows(logits: logits, targets: targets, ignoreIndex: ignoreIndex, operation: "logProbabilities")
    let out = rows.logProbabilities.reshaped(targets.shape).detached()
    guard Autograd.needsGraph(logits) else { return out }
    out.recordOperation("logProbabilities", inputs: [logits]) { g in
        let coefficients = zip(rows.targets, g.doubles()).map { target, gradient in target == ignoreIndex ? 0 : -gradient }
        return [rows.logitGradient(coefficients: coefficients)]
    }
    return out
}

/// The forward shared by both losses: per row, the log-sum-exp and the target's log-probability.
private struct TargetRows {
    /// The logits as contiguous `[rows, width]` data (detached).
    let logits: Tensor
    let shape: [Int]
    let rows: Int, width: Int
    /// One target per row (`ignoreIndex` kept as is).
    let targets: [Int]
    /// `log Σⱼ exp(logitsᵢⱼ)` per row (in the logits' dtype).
    let logSumExp: Tensor
    /// `logitsᵢ,targetᵢ − logSumExpᵢ` per row, 0 for ignored rows (in the logits' dtype).
    let logProbabilities: Tensor

    init(logits: Tensor, targets: Tensor, ignoreIndex: Int, operation: String) {
        logits.requireComputeType(operation)
        ensure(logits.rank >= 1, "\(operation) needs logits [N.., V], got a scalar")
        ensure(targets.dtype == .int64 || targets.dtype == .int32,
                     "\(operation) targets must be int64 or int32, got \(targets.dtype)")
        ensure(targets.shape == Array(logits.shape.dropLast()),
                     "\(operation): targets of shape \(targets.shape) do not match logits \(logits.shape) without the vocabulary axis")
        self.shape = logits.shape
        self.width = logits.shape[logits.rank - 1]
        self.rows = targets.elementCount
        self.targets = targets.integers()
        for (position, target) in self.targets.enumerated() where target != ignoreIndex && !(0..<width).contains(target) {
            fatalError("\(operation): target \(target) at position \(position) is out of range for V = \(width) classes "
                                + "(and is not ignoreIndex \(ignoreIndex))")
        }
        self.logits = logits.contiguousStorageView().detached()
        self.logSumExp = Tensor(zeros: [rows], dtype: logits.dtype)
        self.logProbabilities = Tensor(zeros: [rows], dtype: logits.dtype)
        let (x, lse, logp, targetList, rows, width) = (self.logits, logSumExp, logProbabilities, self.targets, rows, width)
        dispatchFloat(logits.dtype, operation,
                      float: { targetForward(x, lse, logp, targetList, ignoreIndex, rows: rows, width: width, Float.self) },
                      double: { targetForward(x, lse, logp, targetList, ignoreIndex, rows: rows, width: width, Double.self) })
    }

    /// `dlogitsᵢ = cᵢ·(softmax(logitsᵢ) − onehot(targetᵢ))` as a `[N.., V]` tensor; rows with
    /// `cᵢ = 0` (ignored tokens) stay zero.
    func logitGradient(coefficients: [Double]) -> Tensor {
        let dx = Tensor(zeros: shape, dtype: logits.dtype)
        dispatchFloat(logits.dtype, "crossEntropy backward",
                      float: { targetBackward(logits, logSumExp, targets, coefficients, dx, rows: rows, width: width, Float.self) },
                      double: { targetBackward(logits, logSumExp, targets, coefficients, dx, rows: rows, width: width, Double.self) })
        return dx
    }
}

@inline(__always)
private func targetForward<T: RowScalar>(_ logits: Tensor, _ logSumExp: Tensor, _ logProbabilities: Tensor,
                                         _ targets: [Int], _ ignoreIndex: Int, rows: Int, width v: Int, _: T.Type) {
    let px = logits.pointer(as: T.self), pl = logSumExp.pointer(as: T.self), pp = logProbabilities.pointer(as: T.self)
    targets.withUnsafeBufferPointer { targets in
        Parallel.forEachRange(rows, grain: rowGrain(v)) { range in
            for row in range {
                let xr = px + row * v
                let m = RowKernels.maximum(xr, v)
                let lse = m + T.log(RowKernels.exponentials(xr, v, shift: m, into: nil))
                pl[row] = lse
                let target = targets[row]
                pp[row] = target == ignoreIndex ? 0 : xr[target] - lse
            }
        }
    }
}

@inline(__always)
private func targetBackward<T: RowScalar>(_ logits: Tensor, _ logSumExp: Tensor, _ targets: [Int],
                                          _ coefficients: [Double], _ dx: Tensor, rows: Int, width v: Int, _: T.Type) {
    let px = logits.pointer(as: T.self), pl = logSumExp.pointer(as: T.self), pd = dx.pointer(as: T.self)
    targets.withUnsafeBufferPointer { targets in
        coefficients.withUnsafeBufferPointer { coefficients in
            Parallel.forEachRange(rows, grain: rowGrain(v)) { range in
                for row in range where coefficients[row] != 0 {
                    let c = T(coefficients[row])
                    let dr = pd + row * v
                    _ = RowKernels.exponentials(px + row * v, v, shift: pl[row], into: dr, scale: c)
                    let target = targets[row]
                    if (0..<v).contains(target) { dr[target] -= c }
                }
            }
        }
    }
}
