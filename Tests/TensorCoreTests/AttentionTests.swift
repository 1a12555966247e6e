import Foundation
import Testing
import TensorCore
import _TestSupport

/// One attention problem: sizes and mask parts, as plain numbers the naive reference reads.
private struct AttentionCase: CustomStringConvertible {
    var batch = 1, heads = 2, kvHeads = 2, queryLength = 4, keyLength = 4, headWidth = 8
    var isCausal = false, causalOffset = 0
    /// `[B, Tk]`, 1 = real key.
    var padding: [Int]? = nil
    /// `[B, 1, Tq, Tk]`.
    var additive: [Double]? = nil

    var description: String {
        "B\(batch) H\(heads) K\(kvHeads) Tq\(queryLength) Tk\(keyLength) Dh\(headWidth) causal \(isCausal)+\(causalOffset) "
            + "padding \(padding != nil) additive \(additive != nil)"
    }

    func mask(dtype: DType) -> AttentionMask {
        AttentionMask(isCausal: isCausal, causalOffset: causalOffset,
                      keyPadding: padding.map { Tensor(indices: $0, shape: [batch, keyLength]) },
                      additive: additive.map { values in
                          let t = Tensor(values, shape: [batch, 1, queryLength, keyLength])
                          return dtype == .float32 ? t.converted(to: .float32) : t
                      })
    }

    /// Softmax attention written out over the full score matrix in Double: for each (b, h, i),
    /// `s_j = scale·q·k_j + additive − ∞·hidden`, `p = softmax(s)`, `o = Σ p_j v_j`; a row with
    /// every key hidden gives 0.
    func reference(_ q: [Double], _ k: [Double], _ v: [Double], scale: Double? = nil) -> [Double] {
        let dh = headWidth, scale = scale ?? 1 / Double(dh).squareRoot()
        var out = [Double](repeating: 0, count: batch * heads * queryLength * dh)
        for b in 0..<batch {
            for h in 0..<heads {
                let kvh = h / (heads / kvHeads)
                for i in 0..<queryLength {
                    var s = [Double](repeating: -.infinity, count: keyLength)
                    for j in 0..<keyLength {
                        if isCausal && j > causalOffset + i { continue }
                        if let padding, padding[b * keyLength + j] == 0 { continue }
                        var dot = 0.0
                        for d in 0..<dh {
                            dot += q[((b * heads + h) * queryLength + i) * dh + d] * k[((b * kvHeads + kvh) * keyLength + j) * dh + d]
                        }
                        s[j] = scale * dot + (additive?[(b * queryLength + i) * keyLength + j] ?? 0)
                    }
                    let maximum = s.max() ?? -.infinity
                    guard maximum > -.infinity else { continue }
                    let e = s.map { exp($0 - maximum) }
                    let total = e.reduce(0, +)
                    for j in 0..<keyLength where e[j] > 0 {
                        for d in 0..<dh {
                            out[((b * heads + h) * queryLength + i) * dh + d] += e[j] / total * v[((b * kvHeads + kvh) * keyLength + j) * dh + d]
                        }
                    }
                }
            }
        }
        return out
    }

    var queryShape: [Int] { [batch, heads, queryLength, headWidth] }
    var keyShape: [Int] { [batch, kvHeads, keyLength, headWidth] }
}

/// Padding that hides the last `hidden[b]` keys of each batch row.
private func rightPadding(batch: Int, keyLength: Int, hidden: [Int]) -> [Int] {
    (0..<batch).flatMap { b in (0..<keyLength).map { $0 < keyLength - hidden[b] ? 1 : 0 } }
}

private func randomAdditive(_ count: Int, seed: UInt64) -> [Double] {
    var generator = RandomGenerator(seed: seed)
    // Mostly small biases, some keys hidden outright.
    return (0..<count).map { _ in
        let u = generator.nextUniform()
        return u < 0.15 ? -.infinity : (u - 0.5) * 2
    }
}

/// The cases the forward is checked on; several span more than one query block (64) and key block (256).
private let forwardCases: [AttentionCase] = {
    var cases: [AttentionCase] = []
    cases.append(AttentionCase())
    cases.append(AttentionCase(batch: 2, heads: 4, kvHeads: 2, queryLength: 5, keyLength: 7, headWidth: 16))
    cases.append(AttentionCase(batch: 1, heads: 8, kvHeads: 2, queryLength: 6, keyLength: 6, headWidth: 8, isCausal: true))
    cases.append(AttentionCase(batch: 2, heads: 4, kvHeads: 1, queryLength: 3, keyLength: 9, headWidth: 8, isCausal: true, causalOffset: 6))
    cases.append(AttentionCase(batch: 2, heads: 2, kvHeads: 2, queryLength: 5, keyLength: 6, headWidth: 8,
                               padding: rightPadding(batch: 2, keyLength: 6, hidden: [0, 2])))
    cases.append(AttentionCase(batch: 2, heads: 4, kvHeads: 2, queryLength: 4, keyLength: 5, headWidth: 8,
                               additive: randomAdditive(2 * 4 * 5, seed: 40)))
    cases.append(AttentionCase(batch: 2, heads: 4, kvHeads: 2, queryLength: 70, keyLength: 300, headWidth: 8, isCausal: true,
                               causalOffset: 230, padding: rightPadding(batch: 2, keyLength: 300, hidden: [3, 40]),
                               additive: randomAdditive(2 * 70 * 300, seed: 41)))
    cases.append(AttentionCase(batch: 1, heads: 2, kvHeads: 1, queryLength: 130, keyLength: 130, headWidth: 24, isCausal: true))
    return cases
}()

@Suite("Scaled dot-product attention")
struct AttentionTests {
    @Test("forward matches a naive softmax over full score matrices, in float32 and float64")
    func forwardMatchesReference() {
        for (index, c) in forwardCases.enumerated() {
            let seed = UInt64(100 + index * 3)
            let q = randomDoubles(c.queryShape, seed: seed, requiresGrad: false)
            let k = randomDoubles(c.keyShape, seed: seed + 1, requiresGrad: false)
            let v = randomDoubles(c.keyShape, seed: seed + 2, requiresGrad: false)
            let expected = c.reference(q.doubles(), k.doubles(), v.doubles())
            let out64 = scaledDotProductAttention(query: q, key: k, value: v, mask: c.mask(dtype: .float64))
            #expect(out64.shape == c.queryShape)
            #expect(errors(out64.doubles(), expected).maxAbs < 1e-12, "float64 \(c)")
            let out32 = scaledDotProductAttention(query: q.converted(to: .float32), key: k.converted(to: .float32),
                                                  value: v.converted(to: .float32), mask: c.mask(dtype: .float32))
            #expect(errors(out32.doubles(), expected).maxAbs < 2e-6, "float32 \(c)")
        }
    }

    @Test("grouped-query ratios 1, 2 and 4 agree with repeating each kv head for its query heads")
    func groupedQueryMatchesRepeatedHeads() {
        for ratio in [1, 2, 4] {
            let c = AttentionCase(batch: 2, heads: 4, kvHeads: 4 / ratio, queryLength: 5, keyLength: 7, headWidth: 8, isCausal: true, causalOffset: 2)
            let q = randomFloats(c.queryShape, seed: 1), k = randomFloats(c.keyShape, seed: 2), v = randomFloats(c.keyShape, seed: 3)
            let grouped = scaledDotProductAttention(query: q, key: k, value: v, mask: c.mask(dtype: .float32))
            // Repeat kv head g for query heads g·ratio ..< (g+1)·ratio.
            let repeatHeads = { (t: Tensor) in
                t.unsqueezed(axis: 2).expanded(to: [2, 4 / ratio, ratio, 7, 8]).contiguous().reshaped([2, 4, 7, 8])
            }
            var full = c
            full.kvHeads = 4
            let reference = scaledDotProductAttention(query: q, key: repeatHeads(k), value: repeatHeads(v), mask: full.mask(dtype: .float32))
            #expect(errors(grouped.doubles(), reference.doubles()).maxAbs < 1e-6, "ratio \(ratio)")
            #expect(errors(grouped.doubles(), c.reference(q.doubles(), k.doubles(), v.doubles())).maxAbs < 2e-6, "ratio \(ratio)")
        }
    }

    @Test("a single query (decoding with a KV cache) takes the fast path and matches the reference")
    func singleQueryMatchesReference() {
        let cases = [
            AttentionCase(batch: 2, heads: 8, kvHeads: 2, queryLength: 1, keyLength: 37, headWidth: 64, isCausal: true, causalOffset: 36),
            AttentionCase(batch: 2, heads: 4, kvHeads: 4, queryLength: 1, keyLength: 20, headWidth: 20, isCausal: true, causalOffset: 12,
                          padding: rightPadding(batch: 2, keyLength: 20, hidden: [0, 5]), additive: randomAdditive(2 * 20, seed: 9)),
            AttentionCase(batch: 1, heads: 2, kvHeads: 1, queryLength: 1, keyLength: 300, headWidth: 7),
        ]
        for (index, c) in cases.enumerated() {
            let seed = UInt64(200 + index * 3)
            let q = randomFloats(c.queryShape, seed: seed), k = randomFloats(c.keyShape, seed: seed + 1), v = randomFloats(c.keyShape, seed: seed + 2)
            let out = scaledDotProductAttention(query: q, key: k, value: v, mask: c.mask(dtype: .float32))
            #expect(errors(out.doubles(), c.reference(q.doubles(), k.doubles(), v.doubles())).maxAbs < 2e-6, "\(c)")
        }
    }

    @Test("strided views are read correctly: a permuted [B, T, H, Dh] projection and a transposed layout")
    func nonContiguousInputs() {
        let c = AttentionCase(batch: 2, heads: 4, kvHeads: 2, queryLength: 6, keyLength: 9, headWidth: 8, isCausal: true, causalOffset: 3)
        // Projections as a linear layer leaves them: [B, T, H, Dh], permuted to [B, H, T, Dh].
        let qProjection = randomFloats([2, 6, 4, 8], seed: 11), kProjection = randomFloats([2, 9, 2, 8], seed: 12)
        let q = qProjection.permuted([0, 2, 1, 3]), k = kProjection.permuted([0, 2, 1, 3])
        // Values stored [B, K, Dh, Tk] and transposed: the last axis is not contiguous (copied once).
        let vStored = randomFloats([2, 2, 8, 9], seed: 13)
        let v = vStored.transposed()
        #expect(!q.isContiguous && !k.isContiguous && !v.isContiguous)
        let out = scaledDotProductAttention(query: q, key: k, value: v, mask: c.mask(dtype: .float32))
        let expected = c.reference(q.contiguous().doubles(), k.contiguous().doubles(), v.contiguous().doubles())
        #expect(errors(out.doubles(), expected).maxAbs < 2e-6)
        let single = scaledDotProductAttention(query: q.slice(axis: 2, 5..<6), key: k, value: v,
                                               mask: AttentionMask(isCausal: true, causalOffset: 8))
        #expect(errors(single.doubles(), Array(out.doubles().enumerated().filter { ($0.offset / 8) % 6 == 5 }.map(\.element))).maxAbs < 2e-6)
    }

    @Test("a query whose every key is hidden gives output 0 and gradient 0, never NaN")
    func fullyMaskedRowIsZero() {
        // Key padding hides every key of batch row 1; the additive mask hides every key for query 2 of batch row 0.
        let c = AttentionCase(batch: 2, heads: 2, kvHeads: 1, queryLength: 4, keyLength: 5, headWidth: 4)
        var additive = [Double](repeating: 0, count: 2 * 4 * 5)
        for j in 0..<5 { additive[2 * 5 + j] = -.infinity }
        let mask = AttentionMask(keyPadding: Tensor(indices: [1, 1, 1, 1, 1, 0, 0, 0, 0, 0], shape: [2, 5], dtype: .int32),
                                 additive: Tensor(additive, shape: [2, 1, 4, 5]).converted(to: .float32))
        for single in [false, true] {
            let tq = single ? 1 : 4
            let q = randomFloats([2, 2, tq, 4], seed: 21, requiresGrad: true)
            let k = randomFloats(c.keyShape, seed: 22, requiresGrad: true), v = randomFloats(c.keyShape, seed: 23, requiresGrad: true)
            var m = mask
            if single { m.additive = nil }
            let out = scaledDotProductAttention(query: q, key: k, value: v, mask: m)
            let values = out.doubles()
            #expect(values.allSatisfy { $0.isFinite })
            // Batch row 1 is all zeros; so is query 2 of batch row 0.
            #expect(values[(2 * tq * 4)...].allSatisfy { $0 == 0 })
            if !single {
                for h in 0..<2 { #expect(values[(h * 4 + 2) * 4..<(h * 4 + 3) * 4].allSatisfy { $0 == 0 }) }
            }
            out.sum().backward()
            for grad in [q.grad!, k.grad!, v.grad!] { #expect(grad.doubles().allSatisfy { $0.isFinite }) }
            #expect(q.grad!.doubles()[(2 * tq * 4)...].allSatisfy { $0 == 0 })
        }
    }

    @Test("key padding of every documented dtype, and additive masks of any broadcastable shape, mean the same")
    func maskDTypesAndBroadcasts() {
        let c = AttentionCase(batch: 2, heads: 2, kvHeads: 1, queryLength: 3, keyLength: 4, headWidth: 8,
                              padding: [1, 1, 0, 1, 0, 1, 1, 1])
        let q = randomFloats(c.queryShape, seed: 41), k = randomFloats(c.keyShape, seed: 42), v = randomFloats(c.keyShape, seed: 43)
        let expected = c.reference(q.doubles(), k.doubles(), v.doubles())
        let bytes = { (dtype: DType) -> Tensor in
            let t = Tensor(zeros: [2, 4], dtype: dtype)
            for (i, keep) in c.padding!.enumerated() { t.rawPointer.assumingMemoryBound(to: UInt8.self)[i] = UInt8(keep) }
            return t
        }
        let paddings = [Tensor(indices: c.padding!, shape: [2, 4]), Tensor(indices: c.padding!, shape: [2, 4], dtype: .int32),
                        bytes(.uint8), bytes(.bool), Tensor(c.padding!.map(Float.init), shape: [2, 4])]
        for padding in paddings {
            let out = scaledDotProductAttention(query: q, key: k, value: v, mask: AttentionMask(keyPadding: padding))
            #expect(errors(out.doubles(), expected).maxAbs < 2e-6, "\(padding.dtype)")
        }
        // The same padding as an additive mask, [B, 1, 1, Tk] and as a float64 tensor.
        let additive = Tensor(c.padding!.map { $0 == 1 ? 0.0 : -.infinity }, shape: [2, 1, 1, 4])
        let viaAdditive = scaledDotProductAttention(query: q, key: k, value: v, mask: AttentionMask(additive: additive))
        #expect(errors(viaAdditive.doubles(), expected).maxAbs < 2e-6)
        // A [Tq, Tk] bias shared by the batch and heads equals the same bias expanded to [B, 1, Tq, Tk].
        let bias = randomFloats([3, 4], seed: 44)
        let shared = scaledDotProductAttention(query: q, key: k, value: v, mask: AttentionMask(additive: bias))
        var perBatch = AttentionCase(batch: 2, heads: 2, kvHeads: 1, queryLength: 3, keyLength: 4, headWidth: 8)
        perBatch.additive = bias.doubles() + bias.doubles()
        #expect(errors(shared.doubles(), perBatch.reference(q.doubles(), k.doubles(), v.doubles())).maxAbs < 2e-6)
    }

    @Test("an explicit scale replaces 1/√Dh")
    func explicitScale() {
        let c = AttentionCase(batch: 1, heads: 2, kvHeads: 1, queryLength: 3, keyLength: 4, headWidth: 8)
        let q = randomFloats(c.queryShape, seed: 31), k = randomFloats(c.keyShape, seed: 32), v = randomFloats(c.keyShape, seed: 33)
        let out = scaledDotProductAttention(query: q, key: k, value: v, scale: 0.9)
        #expect(errors(out.doubles(), c.reference(q.doubles(), k.doubles(), v.doubles(), scale: 0.9)).maxAbs < 2e-6)
    }

    @Test("gradients with respect to Q, K and V match finite differences under each mask kind and GQA")
    func gradientsMatchFiniteDifferences() {
        let cases = [
            AttentionCase(batch: 1, heads: 2, kvHeads: 2, queryLength: 3, keyLength: 4, headWidth: 3),
            AttentionCase(batch: 2, heads: 4, kvHeads: 2, queryLength: 3, keyLength: 3, headWidth: 2, isCausal: true),
            AttentionCase(batch: 1, heads: 4, kvHeads: 1, queryLength: 2, keyLength: 5, headWidth: 3, isCausal: true, causalOffset: 3),
            AttentionCase(batch: 2, heads: 2, kvHeads: 1, queryLength: 3, keyLength: 4, headWidth: 3,
                          padding: rightPadding(batch: 2, keyLength: 4, hidden: [1, 4])),
            AttentionCase(batch: 2, heads: 2, kvHeads: 2, queryLength: 3, keyLength: 4, headWidth: 2,
                          additive: randomAdditive(2 * 3 * 4, seed: 51)),
            AttentionCase(batch: 1, heads: 2, kvHeads: 1, queryLength: 1, keyLength: 6, headWidth: 3, isCausal: true, causalOffset: 4,
                          padding: [1, 0, 1, 1, 1, 1]),
        ]
        for (index, c) in cases.enumerated() {
            let seed = UInt64(300 + index * 3)
            let q = randomDoubles(c.queryShape, seed: seed), k = randomDoubles(c.keyShape, seed: seed + 1)
            let v = randomDoubles(c.keyShape, seed: seed + 2)
            let mask = c.mask(dtype: .float64)
            let failure = gradientCheck([q, k, v]) { scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: mask) }
            #expect(failure == nil, "\(c)")
        }
    }

    @Test("gradients span several query and key blocks and flow through permuted views")
    func gradientsAcrossBlocks() {
        // 66 queries and 260 keys: two query blocks, two key blocks, causal trimming at an offset.
        let c = AttentionCase(batch: 1, heads: 1, kvHeads: 1, queryLength: 66, keyLength: 260, headWidth: 2, isCausal: true, causalOffset: 200)
        let q = randomDoubles(c.queryShape, in: -3...3, seed: 61), k = randomDoubles(c.keyShape, in: -3...3, seed: 62)
        let v = randomDoubles(c.keyShape, seed: 63)
        let mask = c.mask(dtype: .float64)
        #expect(gradientCheck([q, k, v]) { scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: mask) } == nil)

        // [B, T, H, Dh] leaves permuted to [B, H, T, Dh].
        let qp = randomDoubles([2, 3, 4, 3], seed: 64), kp = randomDoubles([2, 4, 2, 3], seed: 65), vp = randomDoubles([2, 4, 2, 3], seed: 66)
        #expect(gradientCheck([qp, kp, vp]) {
            scaledDotProductAttention(query: $0[0].permuted([0, 2, 1, 3]), key: $0[1].permuted([0, 2, 1, 3]),
                                      value: $0[2].permuted([0, 2, 1, 3]), mask: AttentionMask(isCausal: true, causalOffset: 1))
        } == nil)
    }

    @Test("when only some of Q, K, V require gradients, those gradients equal the ones computed with all three")
    func partialGradients() {
        let c = AttentionCase(batch: 2, heads: 4, kvHeads: 2, queryLength: 5, keyLength: 6, headWidth: 8, isCausal: true, causalOffset: 1)
        let upstream = randomFloats(c.queryShape, seed: 81)
        let make = { (needs: [Bool]) -> [Tensor] in
            [randomFloats(c.queryShape, seed: 82, requiresGrad: needs[0]), randomFloats(c.keyShape, seed: 83, requiresGrad: needs[1]),
             randomFloats(c.keyShape, seed: 84, requiresGrad: needs[2])]
        }
        let all = make([true, true, true])
        (scaledDotProductAttention(query: all[0], key: all[1], value: all[2], mask: c.mask(dtype: .float32)) * upstream).sum().backward()
        for needs in [[true, false, false], [false, true, false], [false, false, true], [false, true, true]] {
            let some = make(needs)
            (scaledDotProductAttention(query: some[0], key: some[1], value: some[2], mask: c.mask(dtype: .float32)) * upstream).sum().backward()
            for i in 0..<3 {
                if needs[i] {
                    #expect(some[i].grad?.floats() == all[i].grad!.floats(), "input \(i) with \(needs)")
                } else {
                    #expect(some[i].grad == nil)
                }
            }
        }
    }

    @Test("float32 forward and backward agree with float64 within 1e-5 relative")
    func float32AgreesWithFloat64() {
        let c = AttentionCase(batch: 2, heads: 8, kvHeads: 2, queryLength: 100, keyLength: 300, headWidth: 64, isCausal: true,
                              causalOffset: 200, padding: rightPadding(batch: 2, keyLength: 300, hidden: [0, 17]))
        let inputs64 = [randomDoubles(c.queryShape, in: -2...2, seed: 71), randomDoubles(c.keyShape, in: -2...2, seed: 72),
                        randomDoubles(c.keyShape, seed: 73)]
        let inputs32 = inputs64.map { t in
            let f = t.detached().converted(to: .float32)
            f.requiresGrad = true
            return f
        }
        let upstream = randomDoubles(c.queryShape, seed: 74, requiresGrad: false)
        var results: [[[Double]]] = []
        for (inputs, weights) in [(inputs64, upstream), (inputs32, upstream.converted(to: .float32))] {
            let out = scaledDotProductAttention(query: inputs[0], key: inputs[1], value: inputs[2], mask: c.mask(dtype: inputs[0].dtype))
            (out * weights).sum().backward()
            results.append([out.doubles()] + inputs.map { $0.grad!.doubles() })
        }
        for (name, (single, double)) in zip(["output", "dQ", "dK", "dV"], zip(results[1], results[0])) {
            #expect(errors(single, double).relativeL2 < 1e-5, "\(name): \(errors(single, double))")
        }
    }
}
