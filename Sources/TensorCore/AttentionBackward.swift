/// The backward pass of ``scaledDotProductAttention(query:key:value:mask:scale:)``, flash-attention 2
/// style: probabilities are recomputed block by block from the saved log-sum-exp.
///
/// Work is split over `(b, kv head)` pairs: one worker handles every query head that shares a kv
/// head, so dK and dV accumulate without locks.

/// The gradients of attention with respect to Q `[B, H, Tq, Dh]`, K and V `[B, K, Tk, Dh]`
/// (`nil` where not needed).
func attentionBackward(_ layout: AttentionLayout, _ query: Tensor, _ key: Tensor, _ value: Tensor,
                       output: Tensor, logSumExp: Tensor, mask: ResolvedAttentionMask, scale: Double,
                       outputGradient: Tensor, needs: (query: Bool, key: Bool, value: Bool))
    -> (query: Tensor?, key: Tensor?, value: Tensor?) {
    let dtype = query.dtype
    // Gradients nobody needs are skipped in the kernel (their GEMMs too); their buffers stay empty.
    let queryShape = [layout.batch, layout.heads, layout.queryLength, layout.headWidth]
    let keyShape = [layout.batch, layout.kvHeads, layout.keyLength, layout.headWidth]
    let dq = Tensor(zeros: needs.query ? queryShape : [0, 0, 0, 0], dtype: dtype)
    let dk = Tensor(zeros: needs.key ? keyShape : [0, 0, 0, 0], dtype: dtype)
    let dv = Tensor(zeros: needs.value ? keyShape : [0, 0, 0, 0], dtype: dtype)
    dispatchFloat(dtype, "scaledDotProductAttention backward",
                  float: { attentionBackwardKernel(layout, query, key, value, output, logSumExp, mask, scale: Float(scale),
                                                   outputGradient, dq, dk, dv, needs: needs, Float.self) },
                  double: { attentionBackwardKernel(layout, query, key, value, output, logSumExp, mask, scale: scale,
                                                    outputGradient, dq, dk, dv, needs: needs, Double.self) })
    return (needs.query ? dq : nil, needs.key ? dk : nil, needs.value ? dv : nil)
}

private func attentionBackwardKernel<T: ComputeScalar>(_ layout: AttentionLayout, _ query: Tensor, _ key: Tensor,
                                                       _ value: Tensor, _ output: Tensor, _ logSumExp: Tensor,
                                                       _ resolvedMask: ResolvedAttentionMask, scale: T,
                                                       _ outputGradient: Tensor, _ dQuery: Tensor, _ dKey: Tensor,
                                                       _ dValue: Tensor, needs: (query: Bool, key: Bool, value: Bool),
                                                       _: T.Type) {
    guard layout.batch * layout.heads * layout.queryLength * layout.keyLength * layout.headWidth > 0 else { return }
    let q = HeadAddressing<T>(query), k = HeadAddressing<T>(key), v = HeadAddressing<T>(value)
    let mask = resolvedMask.pointers(T.self)
    let o = output.pointer(as: T.self), lse = logSumExp.pointer(as: T.self), dO = outputGradient.pointer(as: T.self)
    let dq = dQuery.pointer(as: T.self), dk = dKey.pointer(as: T.self), dv = dValue.pointer(as: T.self)
    let (tq, tk, dh) = (layout.queryLength, layout.keyLength, layout.headWidth)
    let itemCount = layout.batch * layout.kvHeads
    let workPerItem = layout.groupSize * tq * tk * dh
    forEachAttentionWorkItem(itemCount, grain: max(1, 1 << 19 / max(workPerItem, 1))) { items in
        let blockSize = attentionQueryBlock * attentionKeyBlock
        let probabilities = UnsafeMutablePointer<T>.allocate(capacity: blockSize)
        let scoreGradients = UnsafeMutablePointer<T>.allocate(capacity: blockSize)
        var rowTerms = [T](repeating: 0, count: attentionQueryBlock)
        defer {
            probabilities.deallocate()
            scoreGradients.deallocate()
        }
        for item in items {
            let (b, kvh) = item.quotientAndRemainder(dividingBy: layout.kvHeads)
            let kHead = k.head(b, kvh), vHead = v.head(b, kvh)
            let dkHead = dk + item * tk * dh, dvHead = dv + item * tk * dh
            for h in kvh * layout.groupSize..<(kvh + 1) * layout.groupSize {
                let bh = b * layout.heads + h
                var blockStart = 0
                while blockStart < tq {
                    let rows = blockStart..<min(blockStart + attentionQueryBlock, tq)
                    let m = rows.count
                    let qBlock = q.head(b, h) + rows.lowerBound * q.rowStride
                    let first = bh * tq + rows.lowerBound
                    let oBlock = o + first * dh, dOBlock = dO + first * dh, dqBlock = dq + first * dh
                    // D = rowsum(dO ⊙ O)  (m)
                    for r in 0..<m { rowTerms[r] = rowDot(dOBlock + r * dh, oBlock + r * dh, dh) }
                    let keyLimit = mask.keyLimit(rows: rows, keyLength: tk)
                    var start = 0
                    while start < keyLimit {
                        let keys = start..<min(start + attentionKeyBlock, keyLimit)
                        let n = keys.count
                        // P = exp(scale · Q·Kᵀ + mask − LSE)  (m, n); a fully hidden row (LSE = −∞) is 0.
                        maskedScores(q: q, k: k, mask: mask, batch: b, head: h, kvHead: kvh, rows: rows, keys: keys,
                                     keyLength: tk, headWidth: dh, scale: scale, into: probabilities)
                        for r in 0..<m {
                            let row = probabilities + r * n
                            let rowLSE = lse[first + r]
                            if rowLSE == -.infinity {
                                for c in 0..<n { row[c] = 0 }
                            } else {
                                _ = rowExpSubtracting(row, rowLSE, n)
                            }
                        }
                        // dV += Pᵀ·dO  (n, Dh)
                        if needs.value {
                            gemm(.transposed, .none, m: n, n: dh, k: m, a: probabilities, lda: n, b: dOBlock, ldb: dh,
                                 beta: 1, c: dvHead + start * dh, ldc: dh)
                        }
                        guard needs.query || needs.key else {
                            start = keys.upperBound
                            continue
                        }
                        // dP = dO·Vᵀ  (m, n), then dS = P ⊙ (dP − D) in place.
                        gemm(.none, .transposed, m: m, n: n, k: dh, a: dOBlock, lda: dh, b: vHead + start * v.rowStride,
                             ldb: v.rowStride, beta: 0, c: scoreGradients, ldc: n)
                        for r in 0..<m {
                            let p = probabilities + r * n, ds = scoreGradients + r * n
                            let term = rowTerms[r]
                            for c in 0..<n { ds[c] = p[c] * (ds[c] - term) }
                        }
                        // dQ += scale · dS·K  (m, Dh)
                        if needs.query {
                            gemm(.none, .none, m: m, n: dh, k: n, alpha: scale, a: scoreGradients, lda: n,
                                 b: kHead + start * k.rowStride, ldb: k.rowStride, beta: 1, c: dqBlock, ldc: dh)
                        }
                        // dK += scale · dSᵀ·Q  (n, Dh)
                        if needs.key {
                            gemm(.transposed, .none, m: n, n: dh, k: m, alpha: scale, a: scoreGradients, lda: n,
                                 b: qBlock, ldb: q.rowStride, beta: 1, c: dkHead + start * dh, ldc: dh)
                        }
                        start = keys.upperBound
                    }
                    blockStart = rows.upperBound
                }
            }
        }
    }
}
