import Dispatch
import Synchronization
import Testing
import TensorCore
import _TestSupport

/// The bf16 bit patterns of `values` (round to nearest even).
private func bfloat16Bits(_ values: [Float]) -> [UInt16] { values.map { BFloat16.bits(from: $0) } }

@Suite("Matrix-vector and bfloat16 kernels")
struct VectorKernelTests {
    /// Every instruction-set path this CPU can run (the others would be lowered to these).
    static let paths = KernelPath.allCases.filter { $0 <= KernelPath.best }

    @Test("GEMV equals a float64 product on every path, for bf16 and float32 weights, ragged widths and batches",
          arguments: paths)
    func gemvMatchesReference(path: KernelPath) {
        var generator = RandomGenerator(seed: 7)
        for (m, n, k) in [(1, 1, 1), (1, 5, 15), (3, 9, 70), (2, 33, 1000), (8, 17, 129), (8, 40, 1030), (9, 10, 47), (16, 200, 512)] {
            let weight32 = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &generator) }
            let weight16 = bfloat16Bits(weight32)
            let x = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &generator) }
            let start = (0..<(m * n)).map { _ in Float.random(in: -1...1, using: &generator) }
            for bfloat16 in [false, true] {
                for accumulate in [false, true] {
                    var y = start
                    x.withUnsafeBufferPointer { xs in
                        y.withUnsafeMutableBufferPointer { ys in
                            if bfloat16 {
                                weight16.withUnsafeBufferPointer { w in
                                    MatrixVector.product(bfloat16Weight: w.baseAddress!, x: xs.baseAddress!, y: ys.baseAddress!,
                                                         m: m, n: n, k: k, accumulate: accumulate, path: path)
                                }
                            } else {
                                weight32.withUnsafeBufferPointer { w in
                                    MatrixVector.product(weight: w.baseAddress!, x: xs.baseAddress!, y: ys.baseAddress!,
                                                         m: m, n: n, k: k, accumulate: accumulate, path: path)
                                }
                            }
                        }
                    }
                    var expected = [Double](repeating: 0, count: m * n)
                    for j in 0..<m {
                        for r in 0..<n {
                            var sum = accumulate ? Double(start[j * n + r]) : 0
                            for c in 0..<k {
                                let w = bfloat16 ? BFloat16.float(fromBits: weight16[r * k + c]) : weight32[r * k + c]
                                sum += Double(w) * Double(x[j * k + c])
                            }
                            expected[j * n + r] = sum
                        }
                    }
                    let error = errors(y.map(Double.init), expected)
                    #expect(error.maxAbs < 1e-4 * Double(max(1, k / 64)),
                            "\(path) bf16=\(bfloat16) m=\(m) n=\(n) k=\(k) accumulate=\(accumulate): \(error)")
                }
            }
        }
    }

    /// The 8-row kernel reads its inputs in chunks of 512 columns and its weight rows in blocks of
    /// 32, keeping each row's partial sums between chunks; that must not change a bit. Its sum for
    /// one output (k a multiple of 8) is 8 lanes, lane l adding w[c]·x[c] for c ≡ l (mod 8) in
    /// increasing c with one rounding per fused multiply-add, then the lanes as
    /// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)); that is computed here with
    /// `addingProduct` and compared bit for bit, across chunk and block boundaries.
    @Test("the 8-row GEMV sums in lane order exactly, whatever its chunking (k up to 2048, rows past one block)",
          arguments: paths.filter { $0 >= .avx2 })
    func eightRowGemvIsBitExact(path: KernelPath) {
        var generator = RandomGenerator(seed: 17)
        for (n, k) in [(40, 1536), (33, 512), (5, 2048), (70, 1024), (3, 520)] {
            let weight32 = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &generator) }
            let weight16 = bfloat16Bits(weight32)
            let x = (0..<(8 * k)).map { _ in Float.random(in: -1...1, using: &generator) }
            for bfloat16 in [false, true] {
                var y = [Float](repeating: 0, count: 8 * n)
                x.withUnsafeBufferPointer { xs in
                    y.withUnsafeMutableBufferPointer { ys in
                        if bfloat16 {
                            weight16.withUnsafeBufferPointer { w in
                                MatrixVector.product(bfloat16Weight: w.baseAddress!, x: xs.baseAddress!, y: ys.baseAddress!,
                                                     m: 8, n: n, k: k, accumulate: false, path: path)
                            }
                        } else {
                            weight32.withUnsafeBufferPointer { w in
                                MatrixVector.product(weight: w.baseAddress!, x: xs.baseAddress!, y: ys.baseAddress!,
                                                     m: 8, n: n, k: k, accumulate: false, path: path)
                            }
                        }
                    }
                }
                var mismatches = 0
                for j in 0..<8 {
                    for r in 0..<n {
                        var lanes = [Float](repeating: 0, count: 8)
                        for c in stride(from: 0, to: k, by: 8) {
                            for l in 0..<8 {
                                let w = bfloat16 ? BFloat16.float(fromBits: weight16[r * k + c + l]) : weight32[r * k + c + l]
                                lanes[l] = lanes[l].addingProduct(w, x[j * k + c + l])
                            }
                        }
                        let expected = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
                        if y[j * n + r].bitPattern != expected.bitPattern { mismatches += 1 }
                    }
                }
                #expect(mismatches == 0, "\(path) bf16=\(bfloat16) n=\(n) k=\(k): \(mismatches) of \(8 * n) outputs differ")
            }
        }
    }

    @Test("widening is exact on every path, including infinities, NaN payloads and subnormals", arguments: paths)
    func wideningIsExact(path: KernelPath) {
        var bits: [UInt16] = [0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC1, 0x0001, 0x807F, 0x3F80, 0xC2F7]
        var generator = RandomGenerator(seed: 3)
        bits += (0..<1000).map { _ in UInt16(truncatingIfNeeded: generator.next()) }
        var out = [Float](repeating: 0, count: bits.count)
        bits.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { o in BFloat16Kernels.widen(b.baseAddress!, into: o.baseAddress!, count: b.count, path: path) }
        }
        for (i, value) in out.enumerated() {
            #expect(value.bitPattern == UInt32(bits[i]) << 16, "element \(i): \(bits[i]) widened to \(value.bitPattern)")
        }
    }

    @Test("linear agrees between the matrix-vector rows (up to 8) and GEMM, for bf16 and float32 weights")
    func linearGemvAgreesWithGemm() {
        let weight32 = randomFloats([700, 96], seed: 11)
        let weight16 = weight32.converted(to: .bfloat16)
        let widened = weight16.converted(to: .float32)
        let bias = randomFloats([700], seed: 5)
        let many = randomFloats([9, 96], seed: 20)
        let viaGemm16 = many.linear(weight: widened, bias: bias).doubles()  // 9 rows: GEMM
        let viaGemm32 = many.linear(weight: weight32, bias: bias).doubles()
        for rows in [1, 2, 8] {
            let x = many.slice(axis: 0, 0..<rows)
            let count = rows * 700
            #expect(errors(x.linear(weight: weight16, bias: bias).doubles(), Array(viaGemm16[..<count])).maxAbs < 1e-5, "bf16, \(rows) rows")
            #expect(errors(x.linear(weight: weight32, bias: bias).doubles(), Array(viaGemm32[..<count])).maxAbs < 1e-5, "fp32, \(rows) rows")
            #expect(errors(x.linear(weight: weight32).doubles(), x.matmul(weight32.transposed()).doubles()).maxAbs < 1e-5, "fp32 no bias, \(rows) rows")
        }
    }

    @Test("products issued from several threads at once are all correct (the pool serves one caller at a time)")
    func concurrentCallers() {
        let weight = randomFloats([4096, 64], seed: 12).converted(to: .bfloat16)
        let widened = weight.converted(to: .float32)
        let inputs = (0..<8).map { randomFloats([1, 64], seed: UInt64(40 + $0)) }
        let expected = inputs.map { $0.linear(weight: widened).doubles() }
        let results = Mutex([[Double]](repeating: [], count: inputs.count))
        DispatchQueue.concurrentPerform(iterations: inputs.count) { i in
            let y = inputs[i].linear(weight: weight).doubles()
            results.withLock { $0[i] = y }
        }
        let collected = results.withLock { $0 }
        for i in inputs.indices { #expect(errors(collected[i], expected[i]).maxAbs < 1e-5, "caller \(i)") }
    }

    @Test("the peak multiply-add probe reports a rate, higher with the widest vectors than with scalars")
    func peakProbe() {
        let scalar = PeakFlops.measure(path: .portable, seconds: 0.02)
        #expect(scalar > 1e8)
        if KernelPath.best > .portable {
            // 8 or 16 lanes per instruction: even at half the issue rate the vector path is far ahead.
            #expect(PeakFlops.measure(path: .best, seconds: 0.02) > 2 * scalar)
        }
    }
}
