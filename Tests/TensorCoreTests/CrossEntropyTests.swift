import Testing
import TensorCore
import _TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Naive per-token log p(target) for rows of width `v` (0 where ignored).
private func naiveLogProbabilities(_ logits: [Double], _ targets: [Int], width v: Int, ignoreIndex: Int) -> [Double] {
    targets.enumerated().map { row, target in
        guard target != ignoreIndex else { return 0 }
        var m = -Double.infinity
        for j in 0..<v { m = max(m, logits[row * v + j]) }
        var total = 0.0
        for j in 0..<v { total += Glibc.exp(logits[row * v + j] - m) }
        return logits[row * v + target] - m - Glibc.log(total)
    }
}

@Suite("Cross-entropy and log-probabilities")
struct CrossEntropyTests {
    let targets = Tensor(indices: [3, -100, 0, 6, 6, 2], shape: [2, 3])
    let tokenWeights: [Double] = [0.5, 2, 1.5, 1, 0.25, 3]

    @Test("per-token, summed and mean losses match a naive loop, with weights and ignored tokens")
    func forward() {
        let logits = randomFloats([2, 3, 7], in: -4...4, seed: 1)
        let logp = naiveLogProbabilities(logits.doubles(), targets.integers(), width: 7, ignoreIndex: -100)
        let kept = targets.integers().map { $0 == -100 ? 0.0 : 1.0 }
        // Unweighted: the mean divides by the number of non-ignored tokens (5).
        let none = crossEntropy(logits: logits, targets: targets, reduction: .none)
        #expect(closeness(none, Tensor(logp.map { -$0 }, shape: [2, 3]), rtol: 1e-5, atol: 1e-6) == nil)
        let total = -logp.reduce(0, +)
        #expect(abs(crossEntropy(logits: logits, targets: targets, reduction: .sum).item() - total) < 1e-5)
        #expect(abs(crossEntropy(logits: logits, targets: targets).item() - total / 5) < 1e-5)
        // Weighted: the mean divides by the weights of the non-ignored tokens (0.5 + 1.5 + 1 + 0.25 + 3).
        let w = Tensor(tokenWeights, shape: [2, 3]).converted(to: .float32)
        let weightedTotal = zip(zip(logp, tokenWeights), kept).reduce(0) { $0 - $1.0.0 * $1.0.1 * $1.1 }
        let weightSum = zip(tokenWeights, kept).reduce(0) { $0 + $1.0 * $1.1 }
        #expect(abs(crossEntropy(logits: logits, targets: targets, weights: w, reduction: .sum).item() - weightedTotal) < 1e-5)
        #expect(abs(crossEntropy(logits: logits, targets: targets, weights: w).item() - weightedTotal / weightSum) < 1e-5)
        let lp = logProbabilities(logits: logits, targets: targets)
        #expect(closeness(lp, Tensor(logp, shape: [2, 3]), rtol: 1e-5, atol: 1e-6) == nil)
        let int32Targets = Tensor(indices: targets.integers(), shape: [2, 3], dtype: .int32)
        #expect(closeness(logProbabilities(logits: logits, targets: int32Targets), lp, rtol: 0, atol: 0) == nil)
    }

    @Test("with every target ignored the mean loss is 0 (not NaN) and so is its gradient")
    func allIgnored() {
        let logits = randomFloats([4, 5], seed: 2, requiresGrad: true)
        let ignored = Tensor(indices: [-100, -100, -100, -100], shape: [4])
        let loss = crossEntropy(logits: logits, targets: ignored)
        #expect(loss.shape == [] && loss.item() == 0)
        loss.backward()
        #expect(logits.grad?.doubles().allSatisfy { $0 == 0 } == true)
        #expect(crossEntropy(logits: logits, targets: ignored, reduction: .sum).item() == 0)
    }

    @Test("logits of magnitude 1e4 give finite, exact losses")
    func largeLogits() {
        // Row 0: logits (1e4, 1e4 − 2, −1e4), target 1: loss = log(1 + e⁻² + e⁻²⁰⁰⁰⁰) + 2 ≈ 2.126928.
        let logits = Tensor([1e4, 1e4 - 2, -1e4, -1e4, 1e4, 0] as [Float], shape: [2, 3], requiresGrad: true)
        let targets = Tensor(indices: [1, 1], shape: [2])
        let loss = crossEntropy(logits: logits, targets: targets, reduction: .none).doubles()
        #expect(abs(loss[0] - (Glibc.log(1 + Glibc.exp(-2.0)) + 2)) < 1e-3)
        #expect(abs(loss[1]) < 1e-3)
        crossEntropy(logits: logits, targets: targets).backward()
        #expect(logits.grad!.doubles().allSatisfy { $0.isFinite })
    }

    @Test("the gradient with respect to the logits matches finite differences under each reduction")
    func gradients() {
        let w = Tensor(tokenWeights, shape: [2, 3])
        for reduction in [LossReduction.mean, .sum, .none] {
            let logits = randomDoubles([2, 3, 7], in: -3...3, seed: 3)
            #expect(gradientCheck([logits]) { crossEntropy(logits: $0[0], targets: targets, reduction: reduction) } == nil)
            #expect(gradientCheck([logits]) {
                crossEntropy(logits: $0[0], targets: targets, weights: w, reduction: reduction)
            } == nil)
        }
        let wide = randomDoubles([3, 40], in: -3...3, seed: 4)
        let wideTargets = Tensor(indices: [39, 0, 17], shape: [3], dtype: .int32)
        #expect(gradientCheck([wide]) { crossEntropy(logits: $0[0], targets: wideTargets, ignoreIndex: 17) } == nil)
    }

    @Test("logProbabilities gradients match finite differences and vanish at ignored positions")
    func logProbabilityGradients() {
        let logits = randomDoubles([2, 3, 7], in: -3...3, seed: 5)
        #expect(gradientCheck([logits]) { logProbabilities(logits: $0[0], targets: targets) } == nil)
        logits.grad = nil
        logProbabilities(logits: logits, targets: targets).sum().backward()
        #expect(logits.grad!.doubles()[7..<14].allSatisfy { $0 == 0 })
    }

    @Test("a target outside the vocabulary that is not ignoreIndex traps")
    func outOfRangeTarget() async {
        await #expect(processExitsWith: .failure) {
            _ = crossEntropy(logits: Tensor(zeros: [2, 4]), targets: Tensor(indices: [1, -1], shape: [2]))
        }
    }
}
