import Testing
import TensorCore
import _TestSupport

/// Naive `[m, k] · [k, n]` in double precision.
private func naiveProduct(_ a: [Double], _ b: [Double], m: Int, k: Int, n: Int) -> [Double] {
    var c = [Double](repeating: 0, count: m * n)
    for i in 0..<m { for j in 0..<n { for p in 0..<k { c[i * n + j] += a[i * k + p] * b[p * n + j] } } }
    return c
}

@Suite("Matrix products")
struct MatrixTests {
    @Test("matmul matches a naive product, including transposed views and broadcast batches")
    func matmulForward() {
        let a = randomFloats([3, 4, 5], seed: 1), b = randomFloats([5, 6], seed: 2)
        let c = a.matmul(b)
        #expect(c.shape == [3, 4, 6])
        let av = a.doubles(), bv = b.doubles()
        var expected = [Double]()
        for batch in 0..<3 { expected += naiveProduct(Array(av[batch * 20..<(batch + 1) * 20]), bv, m: 4, k: 5, n: 6) }
        #expect(errors(c.doubles(), expected).maxAbs < 1e-5)

        // A transposed right operand is read in place.
        let bt = randomFloats([6, 5], seed: 3)
        let viaView = a.matmul(bt.transposed())
        let viaCopy = a.matmul(bt.transposed().contiguous())
        #expect(viaView.floats() == viaCopy.floats())

        // Batch broadcasting: [2, 1, 4, 5] · [3, 5, 6] → [2, 3, 4, 6].
        let x = randomFloats([2, 1, 4, 5], seed: 4), y = randomFloats([3, 5, 6], seed: 5)
        let z = x.matmul(y)
        #expect(z.shape == [2, 3, 4, 6])
        let xv = x.doubles(), yv = y.doubles(), zv = z.doubles()
        let slice = naiveProduct(Array(xv[20..<40]), Array(yv[60..<90]), m: 4, k: 5, n: 6)
        #expect(errors(Array(zv[(1 * 3 + 2) * 24..<(1 * 3 + 3) * 24]), slice).maxAbs < 1e-5)
    }

    @Test("matmul gradients match finite differences for plain, transposed and broadcast operands")
    func matmulGradients() {
        let a = randomDoubles([2, 3, 4], seed: 6), b = randomDoubles([4, 5], seed: 7)
        #expect(gradientCheck([a, b]) { $0[0].matmul($0[1]) } == nil)
        let bt = randomDoubles([5, 4], seed: 8)
        #expect(gradientCheck([a, bt]) { $0[0].matmul($0[1].transposed()) } == nil)
        let batch = randomDoubles([1, 4, 3], seed: 9)
        #expect(gradientCheck([a, batch]) { $0[0].matmul($0[1]) } == nil)
        #expect(gradientCheck([a]) { $0[0].transposed().matmul($0[0]) } == nil)
    }

    @Test("linear matches x·Wᵀ+b and its gradients match finite differences")
    func linear() {
        let x = randomFloats([2, 3, 4], seed: 10), w = randomFloats([5, 4], seed: 11), b = randomFloats([5], seed: 12)
        let y = x.linear(weight: w, bias: b)
        #expect(y.shape == [2, 3, 5])
        let reference = x.matmul(w.transposed()) + b
        #expect(errors(y.doubles(), reference.doubles()).maxAbs < 1e-5)

        let xd = randomDoubles([2, 3, 4], seed: 13), wd = randomDoubles([5, 4], seed: 14), bd = randomDoubles([5], seed: 15)
        #expect(gradientCheck([xd, wd, bd]) { $0[0].linear(weight: $0[1], bias: $0[2]) } == nil)
    }

    @Test("linear's float32 backward equals the composed matmul backward")
    func linearFloatBackward() {
        let x = randomFloats([6, 4], seed: 16, requiresGrad: true), w = randomFloats([3, 4], seed: 17, requiresGrad: true)
        let b = randomFloats([3], seed: 18, requiresGrad: true)
        let upstream = randomFloats([6, 3], seed: 19)
        (x.linear(weight: w, bias: b) * upstream).sum().backward()
        let fused = (x.grad!.floats(), w.grad!.floats(), b.grad!.floats())
        x.grad = nil; w.grad = nil; b.grad = nil
        ((x.matmul(w.transposed()) + b) * upstream).sum().backward()
        #expect(errors(fused.0.map(Double.init), x.grad!.doubles()).maxAbs < 1e-5)
        #expect(errors(fused.1.map(Double.init), w.grad!.doubles()).maxAbs < 1e-5)
        #expect(errors(fused.2.map(Double.init), b.grad!.doubles()).maxAbs < 1e-5)
    }

    @Test("a bfloat16 weight gives the product of its float32 upcast, and input gradients flow")
    func bfloat16Weight() {
        let w32 = randomFloats([300, 64], seed: 20)
        let w16 = w32.converted(to: .bfloat16)
        let upcast = w16.converted(to: .float32)
        let x = randomFloats([3, 64], seed: 21, requiresGrad: true)
        let y = x.linear(weight: w16)
        #expect(errors(y.doubles(), x.linear(weight: upcast).doubles()).maxAbs < 1e-4)
        y.sum().backward()
        let viaBF16 = x.grad!.doubles()
        x.grad = nil
        x.linear(weight: upcast).sum().backward()
        #expect(errors(viaBF16, x.grad!.doubles()).maxAbs < 1e-4)
    }

    @Test("linear on a single row (the GEMV path) equals the GEMM path, with and without bias")
    func singleRowLinear() {
        let w = randomFloats([37, 19], seed: 30), b = randomFloats([37], seed: 31)
        let rows = randomFloats([3, 19], seed: 32)
        let batched = rows.linear(weight: w, bias: b).doubles()
        for row in 0..<3 {
            let single = rows.slice(axis: 0, row..<(row + 1)).linear(weight: w, bias: b).doubles()
            #expect(errors(single, Array(batched[(row * 37)..<((row + 1) * 37)])).maxAbs < 1e-5)
        }
        let noBias = rows.slice(axis: 0, 1..<2).linear(weight: w)
        #expect(errors(noBias.doubles(), rows.slice(axis: 0, 1..<2).matmul(w.transposed()).doubles()).maxAbs < 1e-5)
    }
}
