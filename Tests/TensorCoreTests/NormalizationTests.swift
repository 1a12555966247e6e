import Testing
import TensorCore
import _TestSupport

/// Naive RMSNorm over rows of width `d`: `y = w·x/√(mean(x²) + ε)`.
private func naiveRMSNorm(_ x: [Double], _ w: [Double]?, width d: Int, epsilon: Double) -> [Double] {
    var y = [Double](repeating: 0, count: x.count)
    for row in 0..<(x.count / d) {
        var squares = 0.0
        for j in 0..<d { squares += x[row * d + j] * x[row * d + j] }
        let r = 1 / (squares / Double(d) + epsilon).squareRoot()
        for j in 0..<d { y[row * d + j] = x[row * d + j] * r * (w?[j] ?? 1) }
    }
    return y
}

/// Naive LayerNorm over rows of width `d` with the biased variance.
private func naiveLayerNorm(_ x: [Double], _ w: [Double]?, _ b: [Double]?, width d: Int, epsilon: Double) -> [Double] {
    var y = [Double](repeating: 0, count: x.count)
    for row in 0..<(x.count / d) {
        var mean = 0.0
        for j in 0..<d { mean += x[row * d + j] }
        mean /= Double(d)
        var variance = 0.0
        for j in 0..<d { variance += (x[row * d + j] - mean) * (x[row * d + j] - mean) }
        variance /= Double(d)
        for j in 0..<d {
            y[row * d + j] = (x[row * d + j] - mean) / (variance + epsilon).squareRoot() * (w?[j] ?? 1) + (b?[j] ?? 0)
        }
    }
    return y
}

@Suite("RMSNorm and LayerNorm")
struct NormalizationTests {
    @Test("RMSNorm matches a naive loop with and without a weight, in float32 and float64", arguments: [5, 37, 64])
    func rmsNormForward(width: Int) {
        let x = randomFloats([3, 2, width], in: -3...3, seed: 1)
        let w = randomFloats([width], in: 0.5...1.5, seed: 2)
        let expected = naiveRMSNorm(x.doubles(), w.doubles(), width: width, epsilon: 1e-5)
        #expect(closeness(x.rmsNorm(weight: w, epsilon: 1e-5), Tensor(expected, shape: x.shape), rtol: 1e-5, atol: 1e-6) == nil)
        let plain = naiveRMSNorm(x.doubles(), nil, width: width, epsilon: 1e-5)
        #expect(closeness(x.rmsNorm(weight: nil, epsilon: 1e-5), Tensor(plain, shape: x.shape), rtol: 1e-5, atol: 1e-6) == nil)
        let xd = x.converted(to: .float64)
        #expect(closeness(xd.rmsNorm(weight: w, epsilon: 1e-5), Tensor(expected, shape: x.shape), rtol: 1e-12, atol: 1e-12) == nil)
    }

    @Test("RMSNorm upcasts a bfloat16 weight")
    func rmsNormBFloat16Weight() {
        let x = randomFloats([4, 40], seed: 3)
        let w = randomFloats([40], in: 0.5...1.5, seed: 4).converted(to: .bfloat16)
        let expected = naiveRMSNorm(x.doubles(), w.doubles(), width: 40, epsilon: 1e-6)
        #expect(closeness(x.rmsNorm(weight: w, epsilon: 1e-6), Tensor(expected, shape: x.shape), rtol: 1e-5, atol: 1e-6) == nil)
    }

    @Test("RMSNorm gradients with respect to x and the weight match finite differences", arguments: [7, 33])
    func rmsNormGradients(width: Int) {
        let x = randomDoubles([3, width], seed: 5), w = randomDoubles([width], in: 0.5...1.5, seed: 6)
        #expect(gradientCheck([x, w]) { $0[0].rmsNorm(weight: $0[1], epsilon: 1e-5) } == nil)
        #expect(gradientCheck([x]) { $0[0].rmsNorm(weight: nil, epsilon: 1e-5) } == nil)
    }

    @Test("LayerNorm matches a naive loop with and without weight and bias", arguments: [6, 48])
    func layerNormForward(width: Int) {
        let x = randomFloats([5, width], in: -2...4, seed: 7)
        let w = randomFloats([width], seed: 8), b = randomFloats([width], seed: 9)
        let (xv, wv, bv) = (x.doubles(), w.doubles(), b.doubles())
        for (weight, bias) in [(w, b), (nil, nil), (w, nil), (nil, b)] as [(Tensor?, Tensor?)] {
            let expected = naiveLayerNorm(xv, weight == nil ? nil : wv, bias == nil ? nil : bv, width: width, epsilon: 1e-5)
            let y = x.layerNorm(weight: weight, bias: bias, epsilon: 1e-5)
            #expect(closeness(y, Tensor(expected, shape: x.shape), rtol: 1e-5, atol: 1e-5) == nil)
        }
    }

    @Test("LayerNorm gradients with respect to x, weight and bias match finite differences", arguments: [5, 35])
    func layerNormGradients(width: Int) {
        let x = randomDoubles([2, 3, width], seed: 10)
        let w = randomDoubles([width], seed: 11), b = randomDoubles([width], seed: 12)
        #expect(gradientCheck([x, w, b]) { $0[0].layerNorm(weight: $0[1], bias: $0[2], epsilon: 1e-5) } == nil)
        #expect(gradientCheck([x]) { $0[0].layerNorm(weight: nil, bias: nil, epsilon: 1e-5) } == nil)
    }
}
