import Testing
import TensorCore
import _TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Naive softmax (or log-softmax) of each row of width `d`, with the maximum subtracted.
private func naiveSoftmax(_ x: [Double], width d: Int, logarithm: Bool) -> [Double] {
    var y = [Double](repeating: 0, count: x.count)
    for row in 0..<(x.count / d) {
        var m = -Double.infinity
        for j in 0..<d { m = max(m, x[row * d + j]) }
        var total = 0.0
        for j in 0..<d { total += Glibc.exp(x[row * d + j] - m) }
        for j in 0..<d {
            y[row * d + j] = logarithm ? x[row * d + j] - m - Glibc.log(total) : Glibc.exp(x[row * d + j] - m) / total
        }
    }
    return y
}

@Suite("Softmax and log-softmax")
struct SoftmaxTests {
    @Test("softmax and logSoftmax match a naive loop on the last axis", arguments: [3, 16, 50, 1000])
    func lastAxis(width: Int) {
        let x = randomFloats([4, width], in: -20...20, seed: 1)
        for logarithm in [false, true] {
            let expected = Tensor(naiveSoftmax(x.doubles(), width: width, logarithm: logarithm), shape: x.shape)
            let y = logarithm ? x.logSoftmax() : x.softmax()
            #expect(closeness(y, expected, rtol: 1e-5, atol: 1e-6) == nil, "logarithm: \(logarithm)")
            let yd = logarithm ? x.converted(to: .float64).logSoftmax() : x.converted(to: .float64).softmax()
            #expect(closeness(yd, expected, rtol: 1e-12, atol: 1e-14) == nil, "float64, logarithm: \(logarithm)")
        }
    }

    @Test("softmax along a middle axis equals softmax of the permuted tensor")
    func middleAxis() {
        let x = randomFloats([2, 5, 3], seed: 2)
        let y = x.softmax(axis: 1)
        let moved = x.permuted([0, 2, 1]).contiguous()
        let expected = Tensor(naiveSoftmax(moved.doubles(), width: 5, logarithm: false), shape: [2, 3, 5])
        #expect(closeness(y.permuted([0, 2, 1]).contiguous(), expected, rtol: 1e-5, atol: 1e-7) == nil)
    }

    @Test("−∞ entries get probability 0 and the rest renormalise; large logits stay finite")
    func infiniteAndLargeEntries() {
        let x = Tensor([0, -.infinity, 1, -.infinity, 1e4, 1e4 - 1, -1e4, 0] as [Float], shape: [2, 4])
        let y = x.softmax().doubles()
        let e = 1 / (1 + Glibc.exp(1.0))
        #expect(abs(y[0] - e) < 1e-6 && y[1] == 0 && abs(y[2] - (1 - e)) < 1e-6 && y[3] == 0)
        #expect(abs(y[4] - (1 - e)) < 1e-6 && abs(y[5] - e) < 1e-6 && y[6] == 0 && y[7] == 0)
        let logY = x.logSoftmax().doubles()
        // float32 spacing near 1e4 is 2⁻¹⁰, so the log-probability there is good to about 1e-3.
        #expect(logY[1] == -.infinity && abs(logY[4] - Glibc.log(1 - e)) < 2e-3)
    }

    @Test("softmax and logSoftmax gradients match finite differences on the last and a middle axis")
    func gradients() {
        let x = randomDoubles([3, 4, 5], in: -3...3, seed: 3)
        #expect(gradientCheck([x]) { $0[0].softmax() } == nil)
        #expect(gradientCheck([x]) { $0[0].logSoftmax() } == nil)
        #expect(gradientCheck([x]) { $0[0].softmax(axis: 1) } == nil)
        #expect(gradientCheck([x]) { $0[0].logSoftmax(axis: 0) } == nil)
        let wide = randomDoubles([2, 37], in: -3...3, seed: 4)
        #expect(gradientCheck([wide]) { $0[0].softmax() } == nil)
        #expect(gradientCheck([wide]) { $0[0].logSoftmax() } == nil)
    }

    @Test("float32 softmax is accurate to a few ulp across the whole exponent range")
    func exponentialAccuracy() {
        // softmax([x, 0])₀ = eˣ/(1 + eˣ): for x ≪ 0 this is eˣ itself, so it probes exp over [−87, 20].
        let xs = stride(from: -87.0, through: 20.0, by: 0.173).map { $0 }
        let values: [Float] = xs.flatMap { [Float($0), 0] }
        let y = Tensor(values, shape: [xs.count, 2]).softmax().doubles()
        for (row, x) in xs.enumerated() {
            let v = Double(Float(x))
            let expected = 1 / (1 + Glibc.exp(-v))
            #expect(abs(y[2 * row] - expected) <= 4e-7 * expected, "x = \(v)")
        }
    }
}
