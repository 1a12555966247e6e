import Testing
import TensorCore
import _TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite("SwiGLU")
struct SwiGLUTests {
    @Test("swiglu equals silu(gate)·up and its gradients match finite differences")
    func swigluForwardAndBackward() {
        let gate = randomFloats([3, 37], in: -8...8, seed: 4), up = randomFloats([3, 37], seed: 5)
        let expected = zip(gate.doubles(), up.doubles()).map { a, b in a / (1 + Glibc.exp(-a)) * b }
        #expect(closeness(swiglu(gate: gate, up: up), Tensor(expected, shape: [3, 37]), rtol: 1e-5, atol: 1e-6) == nil)
        let g = randomDoubles([2, 19], in: -4...4, seed: 6), u = randomDoubles([2, 19], seed: 7)
        #expect(gradientCheck([g, u]) { swiglu(gate: $0[0], up: $0[1]) } == nil)
    }
}
