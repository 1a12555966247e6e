import Foundation
import Testing
@testable import TensorCore
import _TestSupport

/// The bf16 value nearest to `value` by exhaustive comparison of its two neighbours in float64
/// (ties to the even pattern; past the largest bf16 the next value up is 2¹²⁸, i.e. infinity).
private func referenceRound(_ value: Float) -> UInt16 {
    if value.isNaN { return UInt16(value.bitPattern >> 16) | 0x0040 }
    if value.isInfinite { return UInt16(value.bitPattern >> 16) }
    let magnitude = abs(Double(value)), sign = UInt16(value.bitPattern >> 31) << 15
    let below = UInt16((abs(value).bitPattern) >> 16)                  // truncation toward zero
    let above = below + 1
    func double(_ bits: UInt16) -> Double { bits == 0x7F80 ? 0x1p128 : Double(BFloat16.float(fromBits: bits)) }
    let down = magnitude - double(below), up = double(above) - magnitude
    let chosen = down < up ? below : up < down ? above : (below & 1 == 0 ? below : above)
    return sign | chosen
}

/// `C = op(A) · op(B) (+ C₀)` in float64 from the bf16-rounded operands, and `Σ |aᵢ bᵢ| (+ |C₀|)`
/// per element (for the error bound).
private func reference(_ transA: Bool, _ transB: Bool, a: [Float], lda: Int, b: [Float], ldb: Int, start: [Float]?,
                       ldc: Int, m: Int, n: Int, k: Int) -> (value: [Double], magnitude: [Double]) {
    func r(_ x: Float) -> Double { Double(BFloat16.float(fromBits: referenceRound(x))) }
    var value = [Double](repeating: 0, count: m * n), magnitude = value
    for i in 0..<m {
        for j in 0..<n {
            var sum = 0.0, absolute = 0.0
            for kk in 0..<k {
                let x = r(transA ? a[kk * lda + i] : a[i * lda + kk]), y = r(transB ? b[j * ldb + kk] : b[kk * ldb + j])
                sum += x * y
                absolute += abs(x * y)
            }
            if let start { sum += Double(start[i * ldc + j]); absolute += abs(Double(start[i * ldc + j])) }
            (value[i * n + j], magnitude[i * n + j]) = (sum, absolute)
        }
    }
    return (value, magnitude)
}

@Suite("bfloat16 GEMM (bf16 operands, float32 sums)")
struct BFloat16GEMMTests {
    /// The kernels to check: the portable one always, the AVX512-BF16 one where the CPU has it.
    static let kernels: [Bool] = BFloat16GEMM.isNative ? [true, false] : [true]

    @Test("rounding to bf16 is to nearest with ties to even, keeps ±Inf, overflows to Inf and keeps NaN quiet")
    func rounding() {
        let cases: [(Float, UInt16)] = [
            (1.0, 0x3F80), (-2.0, 0xC000), (0, 0x0000), (-0.0, 0x8000),
            (Float(bitPattern: 0x3F80_8000), 0x3F80),   // exactly halfway, even below: stays
            (Float(bitPattern: 0x3F81_8000), 0x3F82),   // exactly halfway, odd below: rounds up to even
            (Float(bitPattern: 0x3F80_8001), 0x3F81),   // just above halfway
            (Float(bitPattern: 0x3F80_7FFF), 0x3F80),   // just below halfway
            (.infinity, 0x7F80), (-.infinity, 0xFF80),
            (.greatestFiniteMagnitude, 0x7F80),          // rounds past the largest bf16 (0x7F7F)
            (Float(bitPattern: 0x7F7F_7FFF), 0x7F7F),    // largest bf16 plus less than half an ulp
            (Float(bitPattern: 0x0000_8000), 0x0000),    // subnormal tie, even below
            (Float(bitPattern: 0x0001_8000), 0x0002),    // subnormal tie, odd below
        ]
        for (value, expected) in cases {
            #expect(BFloat16GEMM.round(value) == expected, "\(value) (0x\(String(value.bitPattern, radix: 16)))")
            #expect(referenceRound(value) == expected, "reference: \(value)")
        }
        for nan in [Float(bitPattern: 0x7FC0_0000), Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFA0_1234)] {
            let bits = BFloat16GEMM.round(nan)
            #expect(BFloat16.float(fromBits: bits).isNaN && bits & 0x0040 != 0 && bits >> 15 == UInt16(nan.bitPattern >> 31),
                    "NaN 0x\(String(nan.bitPattern, radix: 16)) → 0x\(String(bits, radix: 16))")
        }
        var generator = RandomGenerator(seed: 17)
        for _ in 0..<200_000 {
            let value = Float(bitPattern: UInt32(truncatingIfNeeded: generator.next()))
            let bits = BFloat16GEMM.round(value)
            #expect(bits == referenceRound(value), "0x\(String(value.bitPattern, radix: 16))")
            #expect(bits == BFloat16.bits(from: value))
            if bits != referenceRound(value) { break }
        }
    }

    /// The error bound: the result is the exact product of the rounded operands up to float32
    /// additions, |error| ≤ (k + 2) · 2⁻²⁴ · Σ |aᵢ bᵢ| (k products and the start value, each sum
    /// rounded once; products of two bf16 values are exact in float32).
    @Test("products equal the float64 product of the bf16-rounded operands within the float32 summation bound, every shape and transpose",
          arguments: kernels)
    func productsMatchReference(native: Bool) {
        var generator = RandomGenerator(seed: 23)
        let shapes = [(1, 1, 1), (1, 1, 2), (2, 3, 5), (13, 33, 3), (12, 32, 256), (25, 70, 300), (11, 97, 257),
                      (1, 64, 1000), (37, 1, 9), (4, 5, 0), (50, 31, 1), (5, 40, 1030)]
        for (index, (m, n, k)) in shapes.enumerated() {
            for transA in [false, true] {
                for transB in [false, true] {
                    let accumulate = (index + (transA ? 1 : 0)) % 2 == 1
                    let prepacked = (index + (transB ? 1 : 0)) % 3 == 0
                    // Leading dimensions wider than the matrices, and a column of C the product must not touch.
                    let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 2, ldc = n + 1
                    func values(_ count: Int) -> [Float] { (0..<count).map { _ in Float(generator.nextUniform() * 2 - 1) } }
                    let a = values(lda * (transA ? k : m)), b = values(ldb * (transB ? n : k)), start = values(ldc * m)
                    var c = start
                    a.withUnsafeBufferPointer { a in
                        b.withUnsafeBufferPointer { b in
                            c.withUnsafeMutableBufferPointer { c in
                                let operand: BFloat16GEMM.Operand = prepacked
                                    ? .packed(.init(transB ? .transposed : .none, b.baseAddress!, ldb: ldb, k: k, n: n, portable: !native))
                                    : .matrix(transB ? .transposed : .none, b.baseAddress!, ldb: ldb)
                                BFloat16GEMM.multiply(transA ? .transposed : .none, m: m, n: n, k: k, a: a.baseAddress!, lda: lda,
                                                      b: operand, accumulate: accumulate, c: c.baseAddress!, ldc: ldc, portable: !native)
                            }
                        }
                    }
                    let expected = reference(transA, transB, a: a, lda: lda, b: b, ldb: ldb, start: accumulate ? start : nil,
                                             ldc: ldc, m: m, n: n, k: k)
                    var failures = 0
                    for i in 0..<m {
                        for j in 0..<n {
                            let error = abs(Double(c[i * ldc + j]) - expected.value[i * n + j])
                            let bound = Double(k + 2) * 0x1p-24 * expected.magnitude[i * n + j]
                            if !(error <= bound) { failures += 1 }
                        }
                        if c[i * ldc + n] != start[i * ldc + n] { failures += 1 }
                    }
                    #expect(failures == 0, "native \(native) \(transA ? "T" : "N")\(transB ? "T" : "N") m=\(m) n=\(n) k=\(k) accumulate=\(accumulate) packed=\(prepacked)")
                }
            }
        }
    }

    @Test("the AVX512-BF16 and portable kernels agree within the summation bound on a blocked shape (k past one cache block)",
          .enabled(if: BFloat16GEMM.isNative))
    func kernelsAgree() {
        let (m, n, k) = (70, 100, 1100)   // 550 pairs: two blocks of k
        let a = randomFloats([m, k], seed: 3).floats(), b = randomFloats([n, k], seed: 4).floats()
        var results: [[Float]] = []
        for portable in [false, true] {
            var c = [Float](repeating: .nan, count: m * n)
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    c.withUnsafeMutableBufferPointer { c in
                        BFloat16GEMM.multiply(.none, m: m, n: n, k: k, a: a.baseAddress!, lda: k, b: .matrix(.transposed, b.baseAddress!, ldb: k),
                                              accumulate: false, c: c.baseAddress!, ldc: n, portable: portable)
                    }
                }
            }
            results.append(c)
        }
        let expected = reference(false, true, a: a, lda: k, b: b, ldb: k, start: nil, ldc: n, m: m, n: n, k: k)
        for index in 0..<(m * n) {
            let bound = Double(k + 2) * 0x1p-24 * expected.magnitude[index]
            #expect(abs(Double(results[0][index]) - Double(results[1][index])) <= 2 * bound, "element \(index)")
        }
    }

    @Test("linear in a BFloat16Linear scope: forward, input and weight gradients are the bf16 products; frozen weights are packed once; outside the scope nothing changes")
    func linearInScope() {
        let (m, n, k) = (24, 40, 33)
        let x = randomFloats([2, m / 2, k], seed: 8, requiresGrad: true)
        let trainable = randomFloats([n, k], seed: 9, requiresGrad: true)
        let frozen = randomFloats([n, k], seed: 10)
        let bias = randomFloats([n], seed: 11)
        let dy = randomFloats([2, m / 2, n], seed: 12)
        let xs = x.floats(), dys = dy.floats(), biases = bias.floats()

        let plain = x.linear(weight: frozen, bias: bias).doubles()
        let scope = BFloat16Linear()
        for weight in [trainable, frozen] {
            x.grad = nil
            trainable.grad = nil
            let y = scope.run { x.linear(weight: weight, bias: bias) }
            scope.run { (y * dy).sum().backward() }
            let w = weight.floats()
            // y = x·Wᵀ + b, dx = dy·W, dW = dyᵀ·x, each from rounded operands.
            let forward = reference(false, true, a: xs, lda: k, b: w, ldb: k, start: nil, ldc: n, m: m, n: n, k: k)
            let dx = reference(false, false, a: dys, lda: n, b: w, ldb: k, start: nil, ldc: k, m: m, n: k, k: n)
            let actualY = y.floats(), actualDx = x.grad!.floats()
            for index in 0..<(m * n) {
                let expected = forward.value[index] + Double(biases[index % n])
                let bound = Double(k + 2) * 0x1p-24 * (forward.magnitude[index] + abs(Double(biases[index % n])))
                #expect(abs(Double(actualY[index]) - expected) <= bound, "y[\(index)] trainable=\(weight.requiresGrad)")
            }
            for index in 0..<(m * k) {
                #expect(abs(Double(actualDx[index]) - dx.value[index]) <= Double(n + 2) * 0x1p-24 * dx.magnitude[index], "dx[\(index)]")
            }
            if weight.requiresGrad {
                let dw = reference(true, false, a: dys, lda: n, b: xs, ldb: k, start: nil, ldc: k, m: n, n: k, k: m)
                let actualDw = trainable.grad!.floats()
                for index in 0..<(n * k) {
                    #expect(abs(Double(actualDw[index]) - dw.value[index]) <= Double(m + 2) * 0x1p-24 * dw.magnitude[index], "dW[\(index)]")
                }
            }
        }
        // The frozen weight was packed twice (forward and input-gradient layouts), the trainable one never.
        let packed = scope.cachedBytes
        #expect(packed >= 2 * n * k * 2 && packed < 4 * n * k * 2 + 4096, "\(packed) bytes cached")
        _ = scope.run { x.linear(weight: frozen, bias: bias) }
        #expect(scope.cachedBytes == packed)
        // A changed trainable weight is seen at once (never cached).
        let before = scope.run { x.linear(weight: trainable) }.floats()
        trainable.floatPointer[0] += 1
        let after = scope.run { x.linear(weight: trainable) }.floats()
        #expect(before[0] != after[0])
        // Outside the scope: float32 again, bit for bit.
        #expect(x.linear(weight: frozen, bias: bias).doubles() == plain)
        #expect(BFloat16Linear.active == nil)
    }

    @Test("without trainable-weight conversion only frozen weights' products round to bf16")
    func frozenOnly() {
        let x = randomFloats([16, 20], seed: 30)
        let trainable = randomFloats([9, 20], seed: 31, requiresGrad: true)
        let frozen = randomFloats([9, 20], seed: 32)
        let scope = BFloat16Linear(convertsTrainableWeights: false)
        #expect(scope.run { x.linear(weight: trainable) }.doubles() == x.linear(weight: trainable).doubles())
        #expect(scope.run { x.linear(weight: frozen) }.doubles() != x.linear(weight: frozen).doubles())
    }

    @Test("precision bf16 names the missing CPU feature on a CPU without AVX512-BF16")
    func unsupportedCPU() {
        let old = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 85, avx2FMA: true, avx512: true, avx512BF16: false)
        let reason = MatrixPrecision.bf16.unsupportedReason(on: old)
        #expect(reason?.contains("AVX512-BF16") == true)
        #expect(MatrixPrecision.float32.unsupportedReason(on: old) == nil)
        let new = CPUFeatures(vendor: "AuthenticAMD", family: 25, model: 17, avx2FMA: true, avx512: true, avx512BF16: true)
        #expect(MatrixPrecision.bf16.unsupportedReason(on: new) == nil)
    }
}
