import Testing
import TensorCore
import _TestSupport

@Suite("Broadcasting arithmetic, reductions and views")
struct ArithmeticTests {
    @Test("broadcast add, subtract, multiply and divide match a naive loop")
    func broadcastForward() {
        let a = randomFloats([2, 3, 4], seed: 1), b = randomFloats([3, 1], in: 0.5...2, seed: 2)
        let av = a.floats(), bv = b.floats()
        for (op, f) in [("+", { (x: Float, y: Float) in x + y }), ("-", { $0 - $1 }), ("*", { $0 * $1 }), ("/", { $0 / $1 })] {
            let result: Tensor
            switch op {
            case "+": result = a + b
            case "-": result = a - b
            case "*": result = a * b
            default: result = a / b
            }
            #expect(result.shape == [2, 3, 4])
            var expected = [Float]()
            for i in 0..<2 { for j in 0..<3 { for k in 0..<4 { expected.append(f(av[i * 12 + j * 4 + k], bv[j])) } } }
            #expect(result.floats() == expected, "operator \(op)")
        }
    }

    @Test("gradients of broadcast arithmetic match finite differences")
    func broadcastGradients() {
        let a = randomDoubles([2, 3, 4], seed: 3), b = randomDoubles([3, 1], in: 0.5...2, seed: 4)
        #expect(gradientCheck([a, b]) { $0[0] + $0[1] } == nil)
        #expect(gradientCheck([a, b]) { $0[0] - $0[1] } == nil)
        #expect(gradientCheck([a, b]) { $0[0] * $0[1] } == nil)
        #expect(gradientCheck([a, b]) { $0[0] / $0[1] } == nil)
        #expect(gradientCheck([a]) { 2.5 - $0[0] * 3 } == nil)
    }

    @Test("sum and mean over axes match a naive loop and have correct gradients")
    func reductions() {
        let x = randomFloats([2, 3, 4], seed: 5)
        let v = x.floats()
        let s = x.sum(axes: [1])
        var expected = [Float](repeating: 0, count: 8)
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 { expected[i * 4 + k] += v[i * 12 + j * 4 + k] } } }
        #expect(s.shape == [2, 4])
        #expect(zip(s.floats(), expected).allSatisfy { abs($0 - $1) < 1e-6 })
        #expect(x.sum().shape == [])
        #expect(abs(x.mean().item() - Double(v.reduce(0, +)) / 24) < 1e-6)
        #expect(x.sum(axes: [0, 2], keepingDimensions: true).shape == [1, 3, 1])
        let d = randomDoubles([2, 3, 4], seed: 6)
        #expect(gradientCheck([d]) { $0[0].sum(axes: [1]) } == nil)
        #expect(gradientCheck([d]) { $0[0].mean(axes: [0, 2], keepingDimensions: true) } == nil)
        #expect(gradientCheck([d]) { $0[0].sum() } == nil)
    }

    @Test("views share storage and route gradients back")
    func views() {
        let x = Tensor((0..<24).map(Float.init), shape: [2, 3, 4])
        let t = x.permuted([2, 0, 1])
        #expect(t.shape == [4, 2, 3])
        #expect(t.storage === x.storage)
        #expect(t.contiguous().floats()[0..<6] == [0, 4, 8, 12, 16, 20])
        #expect(x.slice(axis: 2, 1..<3).contiguous().floats() == [1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22])
        #expect(x.reshaped([6, -1]).shape == [6, 4])
        #expect(x.transposed().shape == [2, 4, 3])
        let d = randomDoubles([2, 3, 4], seed: 7)
        #expect(gradientCheck([d]) { $0[0].permuted([2, 0, 1]).contiguous() } == nil)
        #expect(gradientCheck([d]) { $0[0].slice(axis: 1, 1..<3) * 2 } == nil)
        #expect(gradientCheck([d]) { $0[0].reshaped([4, 6]).transposed() * 1 } == nil)
        let small = randomDoubles([3, 1], seed: 8)
        #expect(gradientCheck([small]) { $0[0].expanded(to: [2, 3, 5]) * 1 } == nil)
    }

    @Test("unary functions match their definitions and have correct gradients")
    func unaryFunctions() {
        let x = randomFloats([5, 7], in: -3...3, seed: 9)
        let v = x.floats()
        #expect(zip(x.tanh().floats(), v.map { Foundation_tanh($0) }).allSatisfy { abs($0 - $1) < 1e-6 })
        #expect(zip(x.silu().floats(), v.map { $0 / (1 + Foundation_exp(-$0)) }).allSatisfy { abs($0 - $1) < 1e-6 })
        let d = randomDoubles([4, 5], in: -3...3, seed: 10)
        let positive = randomDoubles([4, 5], in: 0.2...3, seed: 11)
        for (name, f) in [("exp", { (t: Tensor) in t.exp() }), ("tanh", { $0.tanh() }), ("sigmoid", { $0.sigmoid() }),
                          ("silu", { $0.silu() }), ("gelu", { $0.gelu() }), ("gelu tanh", { $0.gelu(approximation: .tanh) }),
                          ("quick gelu", { $0.quickGELU() }), ("square", { $0.squared() })] {
            #expect(gradientCheck([d]) { f($0[0]) } == nil, "\(name)")
        }
        // ReLU and |x| have a kink at 0: check them on values kept away from it.
        let awayFromZero = Tensor(randomDoubles([4, 5], in: 0.1...2, seed: 13).doubles().enumerated().map { $0.offset % 2 == 0 ? $0.element : -$0.element },
                                  shape: [4, 5], requiresGrad: true)
        #expect(gradientCheck([awayFromZero]) { $0[0].relu() } == nil, "relu")
        #expect(gradientCheck([awayFromZero]) { $0[0].absolute() } == nil, "abs")
        for (name, f) in [("log", { (t: Tensor) in t.log() }), ("sqrt", { $0.squareRoot() }), ("rsqrt", { $0.reciprocalSquareRoot() })] {
            #expect(gradientCheck([positive]) { f($0[0]) } == nil, "\(name)")
        }
    }

    @Test("float32 exp, SiLU and sigmoid (vectorised) match libm within 2e-6 relative, gradients included")
    func vectorisedActivations() {
        let x = randomFloats([1000], in: -20...20, seed: 12, requiresGrad: true)
        let v = x.floats()
        let checks: [(String, Tensor, (Float) -> Float)] = [
            ("exp", x.exp(), { Float.exp($0) }), ("silu", x.silu(), { $0 / (1 + Float.exp(-$0)) }),
            ("sigmoid", x.sigmoid(), { 1 / (1 + Float.exp(-$0)) })]
        for (name, result, reference) in checks {
            let worst = zip(result.floats(), v.map(reference)).map { abs($0 - $1) / max(abs($1), 1e-30) }.max()!
            #expect(worst < 2e-6, "\(name): worst relative error \(worst)")
        }
        x.silu().sum().backward()
        let expected = v.map { (t: Float) -> Float in let s = 1 / (1 + Float.exp(-t)); return s * (1 + t * (1 - s)) }
        #expect(zip(x.grad!.floats(), expected).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) })
    }

    @Test("exact GELU matches x·Φ(x) and the tanh form stays within 1e-3 of it")
    func geluForms() {
        let x = Tensor([-3, -1, -0.5, 0, 0.5, 1, 3] as [Double], shape: [7])
        let exact = x.gelu().doubles()
        let reference: [Double] = [-0.0040496, -0.1586553, -0.1542687, 0, 0.3457313, 0.8413447, 2.9959504]
        #expect(zip(exact, reference).allSatisfy { abs($0 - $1) < 1e-6 })
        #expect(zip(x.gelu(approximation: .tanh).doubles(), exact).allSatisfy { abs($0 - $1) < 1e-3 })
    }

    @Test("quick GELU is x·sigmoid(1.702x), in float64 and in vectorised float32 (within 2e-6 relative)")
    func quickGELU() {
        let x = Tensor([-3, -1, -0.5, 0, 0.5, 1, 3] as [Double], shape: [7])
        // x / (1 + e^(−1.702x)) from Python's math module, rounded to 7 digits.
        let reference: [Double] = [-0.0180713, -0.1542042, -0.1496116, 0, 0.3503884, 0.8457958, 2.9819287]
        #expect(zip(x.quickGELU().doubles(), reference).allSatisfy { abs($0 - $1) < 1e-6 }, "\(x.quickGELU().doubles())")
        let f = randomFloats([1000], in: -20...20, seed: 14)
        let worst = zip(f.quickGELU().floats(), f.floats().map { $0 / (1 + Float.exp(-1.702 * $0)) })
            .map { abs($0 - $1) / max(abs($1), 1e-30) }.max()!
        #expect(worst < 2e-6, "worst relative error \(worst)")
    }
}

private func Foundation_tanh(_ x: Float) -> Float { Float.tanh(x) }
private func Foundation_exp(_ x: Float) -> Float { Float.exp(x) }
