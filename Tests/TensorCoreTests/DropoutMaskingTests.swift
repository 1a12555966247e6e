import Testing
import TensorCore
import _TestSupport

@Suite("Dropout and masked fill")
struct DropoutMaskingTests {
    @Test("dropout keeps about 1 − p of the elements, scaled by 1/(1 − p), and is the identity otherwise")
    func dropoutFraction() {
        let x = Tensor.filled(2, shape: [200, 100])
        var generator = RandomGenerator(seed: 42)
        let y = x.dropout(probability: 0.3, training: true, generator: &generator).floats()
        let kept = y.filter { $0 != 0 }
        #expect(kept.allSatisfy { abs($0 - 2 / 0.7) < 1e-5 })
        // 20 000 Bernoulli(0.7) draws: standard deviation ≈ 65, so ±400 is over 6σ.
        #expect(abs(kept.count - 14_000) < 400)
        #expect(x.dropout(probability: 0.3, training: false, generator: &generator) === x)
        #expect(x.dropout(probability: 0, training: true, generator: &generator) === x)
        #expect(x.dropout(probability: 1, training: true, generator: &generator).floats().allSatisfy { $0 == 0 })
        var first = RandomGenerator(seed: 7), second = RandomGenerator(seed: 7)
        #expect(x.dropout(probability: 0.5, training: true, generator: &first).floats()
                == x.dropout(probability: 0.5, training: true, generator: &second).floats())
    }

    @Test("dropout's gradient uses the same mask (finite differences with a fixed generator)")
    func dropoutGradient() {
        let x = randomDoubles([4, 9], seed: 1)
        #expect(gradientCheck([x]) { input in
            var generator = RandomGenerator(seed: 3)
            return input[0].dropout(probability: 0.4, training: true, generator: &generator)
        } == nil)
    }

    @Test("maskedFill fills where a broadcast mask is nonzero, for bool, uint8, int32 and int64 masks")
    func maskedFillForward() {
        let x = randomFloats([2, 3, 4], seed: 2)
        let pattern = [1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1]
        let values = x.floats()
        var expected = values
        for i in 0..<2 { for j in 0..<12 where pattern[j] != 0 { expected[i * 12 + j] = -.infinity } }
        for dtype in [DType.int64, .int32] {
            let mask = Tensor(indices: pattern, shape: [3, 4], dtype: dtype)
            #expect(x.maskedFill(mask, with: -.infinity).floats() == expected, "mask \(dtype)")
        }
        let bytes = Tensor(zeros: [3, 4], dtype: .bool)
        let raw = bytes.rawPointer.assumingMemoryBound(to: UInt8.self)
        for (j, flag) in pattern.enumerated() { raw[j] = UInt8(flag) }
        #expect(x.maskedFill(bytes, with: -.infinity).floats() == expected)
        // A mask broadcast along the last axis: whole rows.
        let rows = Tensor(indices: [0, 1, 0], shape: [3, 1])
        let filled = x.maskedFill(rows, with: 5).floats()
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 {
            #expect(filled[i * 12 + j * 4 + k] == (j == 1 ? 5 : values[i * 12 + j * 4 + k]))
        } } }
    }

    @Test("maskedFill's gradient is zero at filled positions (finite differences)")
    func maskedFillGradient() {
        let x = randomDoubles([2, 3, 4], seed: 3)
        let mask = Tensor(indices: [1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1], shape: [3, 4])
        #expect(gradientCheck([x]) { $0[0].maskedFill(mask, with: -7) } == nil)
        #expect(gradientCheck([x]) { $0[0].maskedFill(Tensor(indices: [1, 0, 1], shape: [3, 1]), with: 0) } == nil)
    }
}
