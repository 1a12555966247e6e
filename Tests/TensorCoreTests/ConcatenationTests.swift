import Testing
import TensorCore
import _TestSupport

@Suite("Concatenation and splitting")
struct ConcatenationTests {
    @Test("three tensors concatenated along a middle axis match a naive loop")
    func middleAxis() {
        let parts = [randomFloats([2, 1, 4], seed: 1), randomFloats([2, 3, 4], seed: 2), randomFloats([2, 2, 4], seed: 3)]
        let out = Tensor.concatenate(parts, axis: 1)
        #expect(out.shape == [2, 6, 4])
        var expected = [Float]()
        for i in 0..<2 {
            for part in parts {
                let values = part.floats(), rows = part.shape[1]
                expected += values[(i * rows * 4)..<((i + 1) * rows * 4)]
            }
        }
        #expect(out.floats() == expected)
        // Non-contiguous inputs and negative axes.
        let t = randomFloats([4, 2], seed: 4).transposed()
        let rows = t.contiguous().floats()
        var doubled = [Float]()
        for r in 0..<2 { doubled += rows[(r * 4)..<(r * 4 + 4)]; doubled += rows[(r * 4)..<(r * 4 + 4)] }
        #expect(Tensor.concatenate([t, t], axis: -1).floats() == doubled)
    }

    @Test("split returns views that undo concatenation")
    func splitUndoesConcatenation() {
        let x = randomFloats([3, 7], seed: 5)
        let pieces = x.split(sizes: [2, 0, 5], axis: 1)
        #expect(pieces.map(\.shape) == [[3, 2], [3, 0], [3, 5]])
        #expect(pieces[0].storage === x.storage)
        #expect(Tensor.concatenate(pieces, axis: 1).floats() == x.floats())
    }

    @Test("concatenate and split gradients match finite differences")
    func gradients() {
        let a = randomDoubles([2, 1, 3], seed: 6), b = randomDoubles([2, 2, 3], seed: 7)
        let c = randomDoubles([2, 3, 3], seed: 8, requiresGrad: false)
        #expect(gradientCheck([a, b, c]) { Tensor.concatenate($0, axis: 1) } == nil)
        #expect(gradientCheck([a, b]) { Tensor.concatenate([$0[0].transposed(), $0[1].transposed()], axis: -1) } == nil)
        let x = randomDoubles([4, 5], seed: 9)
        #expect(gradientCheck([x]) { input in
            let pieces = input[0].split(sizes: [1, 2, 1], axis: 0)
            return pieces[0] * 2 + pieces[2] * 3 + pieces[1].sum(axes: [0], keepingDimensions: true)
        } == nil)
    }
}
