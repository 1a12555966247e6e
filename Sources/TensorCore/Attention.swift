/// Fused scaled dot-product attention, flash-attention style: scores are computed one block of
/// queries × one block of keys at a time with a running maximum and sum (online softmax), so the
/// full `[Tq, Tk]` probability matrix never exists. The backward pass (AttentionBackward.swift)
/// recomputes each block of probabilities from the saved per-row log-sum-exp.
///
/// Shapes: B batch, H query heads, K kv heads, Tq queries, Tk keys, Dh head width.

/// Which keys each query may attend to. The parts combine: a key is hidden if any part hides it.
public struct AttentionMask: Sendable {
    /// Query `i` sits at absolute position `causalOffset + i` and sees only keys at positions ≤ that.
    public var isCausal: Bool
    /// The number of keys before the first query (a KV cache's length before this step).
    public var causalOffset: Int
    /// `[B, Tk]` of any integer, boolean or float type: nonzero marks a real key, 0 a padding key
    /// (hidden from every query).
    public var keyPadding: Tensor?
    /// A float tensor broadcastable to `[B, H, Tq, Tk]` (e.g. `[B, 1, Tq, Tk]`) added to the scaled
    /// scores; `-∞` hides a key. It is a constant: it must not require gradients.
    public var additive: Tensor?

    public init(isCausal: Bool = false, causalOffset: Int = 0, keyPadding: Tensor? = nil, additive: Tensor? = nil) {
        self.isCausal = isCausal
        self.causalOffset = causalOffset
        self.keyPadding = keyPadding
        self.additive = additive
    }

    /// Every query sees every key.
    public static let none = AttentionMask()
}

/// Softmax attention `softmax(scale · Q·Kᵀ + mask) · V`, per batch element and head.
///
/// ```
/// let out = scaledDotProductAttention(query: q, key: k, value: v, mask: AttentionMask(isCausal: true))
/// ```
///
/// - Parameters:
///   - query: `[B, H, Tq, Dh]`.
///   - key: `[B, K, Tk, Dh]` with `H % K == 0`: query head `h` reads kv head `h / (H / K)`
///     (grouped-query attention; `K == H` is ordinary multi-head attention).
///   - value: `[B, K, Tk, Dh]`.
///   - mask: which keys each query sees (see ``AttentionMask``).
///   - scale: the factor on `Q·Kᵀ`; `1/√Dh` by default.
/// - Returns: `[B, H, Tq, Dh]`, contiguous.
///
/// Inputs may be strided views (such as a `[B, T, H, Dh]` projection permuted to `[B, H, T, Dh]`):
/// any view whose last axis is contiguous is read in place; others are copied once.
///
/// A query whose every key is hidden gets output 0 and passes gradient 0 (not NaN), as in Meta's
/// and torchtune's cross-attention, where text tokens before the first image attend to nothing.
/// (transformers' Mllama instead attends uniformly there; its fusion layer zeroes those rows
/// afterwards, so the models agree.)
///
/// Saves for backward: Q, K, V as read (the views themselves, or the one copy made of a view BLAS
/// cannot read), the output O and the per-row log-sum-exp `[B, H, Tq]` of the masked, scaled
/// scores — never the probabilities.
/// Backward (flash-attention 2), per block, with `P = exp(S − LSE)` recomputed:
/// `dV += Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ⊙ (dP − rowsum(dO ⊙ O))`, `dQ = scale·dS·K`,
/// `dK += scale·dSᵀ·Q`; the query heads that share a kv head add into its dK and dV.
public func scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor,
                                      mask: AttentionMask = .none, scale: Double? = nil) -> Tensor {
    let layout = AttentionLayout(query: query, key: key, value: value)
    let scale = scale ?? 1 / Double(layout.headWidth).squareRoot()
    let resolvedMask = ResolvedAttentionMask(mask, layout: layout, dtype: query.dtype)
    let q = AttentionLayout.readable(query), k = AttentionLayout.readable(key), v = AttentionLayout.readable(value)
    let out = Tensor(zeros: [layout.batch, layout.heads, layout.queryLength, layout.headWidth], dtype: query.dtype)
    let logSumExp = Tensor(zeros: [layout.batch, layout.heads, layout.queryLength], dtype: query.dtype)
    BLAS.Profile.attention {
        dispatchFloat(query.dtype, "scaledDotProductAttention",
                      float: { attentionForward(layout, q, k, v, resolvedMask, scale: Float(scale), out: out, logSumExp: logSumExp) },
                      double: { attentionForward(layout, q, k, v, resolvedMask, scale: scale, out: out, logSumExp: logSumExp) })
    }

    guard Autograd.needsGraph(query, key, value) else { return out }
    // Saves Q, K, V, O and the log-sum-exp (see above).
    let savedQuery = q.detached(), savedKey = k.detached(), savedValue = v.detached(), savedOutput = out.detached()
    let needs = (query: query.requiresGrad, key: key.requiresGrad, value: value.requiresGrad)
    out.recordOperation("scaledDotProductAttention", inputs: [query, key, value]) { g in
        let outputGradient = g.contiguous()
        let gradients = BLAS.Profile.attention {
            attentionBackward(layout, savedQuery, savedKey, savedValue, output: savedOutput,
                              logSumExp: logSumExp, mask: resolvedMask, scale: scale,
                              outputGradient: outputGradient, needs: needs)
        }
        return [gradients.query, gradients.key, gradients.value]
    }
    return out
}

// MARK: - Layout and masks

/// The sizes of one attention call, checked against each other.
struct AttentionLayout {
    let batch, heads, kvHeads, queryLength, keyLength, headWidth: Int
    /// Query heads per kv head.
    var groupSize: Int { heads / kvHeads }

    init(query: Tensor, key: Tensor, value: Tensor) {
        ensure(query.rank == 4 && key.rank == 4 && value.rank == 4,
                     "scaledDotProductAttention: query, key and value must be [B, H, T, Dh], got \(query.shape), \(key.shape), \(value.shape)")
        ensure(query.dtype == key.dtype && query.dtype == value.dtype && query.dtype.isComputeType,
                     "scaledDotProductAttention: query, key and value must share a float32 or float64 dtype, got \(query.dtype), \(key.dtype), \(value.dtype)")
        ensure(key.shape == value.shape, "scaledDotProductAttention: key \(key.shape) and value \(value.shape) differ")
        (batch, heads, queryLength, headWidth) = (query.shape[0], query.shape[1], query.shape[2], query.shape[3])
        (kvHeads, keyLength) = (key.shape[1], key.shape[2])
        ensure(key.shape[0] == batch && key.shape[3] == headWidth,
                     "scaledDotProductAttention: key \(key.shape) does not match query \(query.shape) in batch or head width")
        ensure(kvHeads > 0 && heads % kvHeads == 0,
                     "scaledDotProductAttention: \(heads) query heads cannot share \(kvHeads) kv heads evenly")
    }

    /// `t` itself when BLAS can read each `[T, Dh]` head in place (unit stride along Dh, rows at
    /// least Dh apart), otherwise a contiguous copy. Never recorded: gradients are returned in the
    /// shape of the original input.
    static func readable(_ t: Tensor) -> Tensor {
        let rows = t.shape[2], width = t.shape[3]
        let unitInner = t.strides[3] == 1 || width <= 1
        let rowsApart = rows <= 1 || t.strides[2] >= max(width, 1)
        return unitInner && rowsApart ? t.detached() : t.contiguousStorageView().detached()
    }

    /// The distance between rows of a readable `[T, Dh]` head: a valid BLAS leading dimension.
    static func rowStride(_ t: Tensor) -> Int { t.shape[2] <= 1 ? max(t.shape[3], 1) : t.strides[2] }
}

/// Addresses one operand's heads: head `(b, h)` starts at `base + b·batchStride + h·headStride`,
/// its rows `rowStride` apart, its elements adjacent.
struct HeadAddressing<T: ComputeScalar> {
    let base: UnsafeMutablePointer<T>
    let batchStride, headStride, rowStride: Int

    init(_ t: Tensor) {
        base = t.pointer(as: T.self)
        batchStride = t.strides[0]
        headStride = t.strides[1]
        rowStride = AttentionLayout.rowStride(t)
    }

    @inline(__always)
    func head(_ b: Int, _ h: Int) -> UnsafeMutablePointer<T> { base + b * batchStride + h * headStride }
}

/// An ``AttentionMask`` checked against the call's sizes, with key padding as a `[B, Tk]` byte
/// table (1 = visible) and the additive mask in the compute dtype, broadcast to `[B, H, Tq, Tk]`.
struct ResolvedAttentionMask: Sendable {
    let isCausal: Bool
    let causalOffset: Int
    let keyVisible: Tensor?
    let additive: Tensor?

    init(_ mask: AttentionMask, layout: AttentionLayout, dtype: DType) {
        isCausal = mask.isCausal
        causalOffset = mask.causalOffset
        ensure(causalOffset >= 0, "AttentionMask: causalOffset must not be negative, got \(causalOffset)")
        if let padding = mask.keyPadding {
            ensure(padding.shape == [layout.batch, layout.keyLength],
                         "AttentionMask: keyPadding must be [B, Tk] = [\(layout.batch), \(layout.keyLength)], got \(padding.shape)")
            let visible: [Bool] = padding.dtype.isFloatingPoint ? padding.doubles().map { $0 != 0 } : padding.integers().map { $0 != 0 }
            let table = Tensor(zeros: padding.shape, dtype: .uint8)
            let bytes = table.rawPointer.assumingMemoryBound(to: UInt8.self)
            for (i, v) in visible.enumerated() { bytes[i] = v ? 1 : 0 }
            keyVisible = table
        } else {
            keyVisible = nil
        }
        if let additive = mask.additive {
            ensure(!additive.requiresGrad,
                         "AttentionMask: the additive mask must be a constant; gradients with respect to it are not supported (detach it)")
            ensure(additive.dtype.isFloatingPoint, "AttentionMask: the additive mask must be a float tensor, got \(additive.dtype)")
            let target = [layout.batch, layout.heads, layout.queryLength, layout.keyLength]
            ensure(additive.rank <= 4 && (try? Shape.broadcast(additive.shape, target)) == target,
                         "AttentionMask: additive mask \(additive.shape) does not broadcast to [B, H, Tq, Tk] = \(target)")
            self.additive = additive.detached().converted(to: dtype).detached().expanded(to: target)
        } else {
            self.additive = nil
        }
    }

    /// Raw pointers for the kernels (valid while `self` is alive).
    func pointers<T: ComputeScalar>(_: T.Type) -> MaskPointers<T> {
        MaskPointers(isCausal: isCausal, causalOffset: causalOffset,
                     keyVisible: keyVisible.map { UnsafePointer($0.rawPointer.assumingMemoryBound(to: UInt8.self)) },
                     additive: additive.map { UnsafePointer($0.pointer(as: T.self)) },
                     additiveStrides: additive?.strides ?? [0, 0, 0, 0])
    }
}

/// The mask as the kernels read it.
struct MaskPointers<T: ComputeScalar> {
    let isCausal: Bool
    let causalOffset: Int
    let keyVisible: UnsafePointer<UInt8>?
    let additive: UnsafePointer<T>?
    let additiveStrides: [Int]

    /// The keys `0..<limit` that any of the queries `rows` may see (causality trims the end).
    @inline(__always)
    func keyLimit(rows: Range<Int>, keyLength: Int) -> Int {
        isCausal ? min(keyLength, causalOffset + rows.upperBound) : keyLength
    }

    /// Adds the additive mask to, and writes `-∞` over hidden entries of, the scores
    /// `s[r·ld + c]` of queries `rows` × keys `keys` of head `(b, h)`.
    @inline(__always)
    func apply(to s: UnsafeMutablePointer<T>, ld: Int, batch b: Int, head h: Int,
               rows: Range<Int>, keys: Range<Int>, keyLength: Int) {
        if let additive {
            let st = additiveStrides
            for (r, i) in rows.enumerated() {
                let a = additive + b * st[0] + h * st[1] + i * st[2] + keys.lowerBound * st[3]
                let row = s + r * ld
                if st[3] == 1 {
                    for c in 0..<keys.count { row[c] += a[c] }
                } else {
                    for c in 0..<keys.count { row[c] += a[c * st[3]] }
                }
            }
        }
        if let keyVisible {
            let visible = keyVisible + b * keyLength + keys.lowerBound
            for c in 0..<keys.count where visible[c] == 0 {
                for r in 0..<rows.count { s[r * ld + c] = -.infinity }
            }
        }
        if isCausal {
            for (r, i) in rows.enumerated() {
                let firstHidden = causalOffset + i + 1 - keys.lowerBound
                guard firstHidden < keys.count else { continue }
                let row = s + r * ld
                for c in max(firstHidden, 0)..<keys.count { row[c] = -.infinity }
            }
        }
    }
}

// MARK: - Forward

/// Query rows per block and keys per block: the score block `[queryBlock, keyBlock]` and the
/// GEMMs that make it stay in L2.
let attentionQueryBlock = 128
let attentionKeyBlock = 512

/// `S = scale · Q[rows]·K[keys]ᵀ` for query head `h` (kv head `kvh`) of batch row `b`, with the
/// masks applied, into `scores` (`rows.count × keys.count`, packed). The forward pass computes it
/// once per block; the backward recomputes it, since only the log-sum-exp is saved.
@inline(__always)
func maskedScores<T: ComputeScalar>(q: HeadAddressing<T>, k: HeadAddressing<T>, mask: MaskPointers<T>,
                                    batch b: Int, head h: Int, kvHead kvh: Int, rows: Range<Int>, keys: Range<Int>,
                                    keyLength: Int, headWidth: Int, scale: T, into scores: UnsafeMutablePointer<T>) {
    gemm(.none, .transposed, m: rows.count, n: keys.count, k: headWidth, alpha: scale,
         a: q.head(b, h) + rows.lowerBound * q.rowStride, lda: q.rowStride,
         b: k.head(b, kvh) + keys.lowerBound * k.rowStride, ldb: k.rowStride, beta: 0, c: scores, ldc: keys.count)
    mask.apply(to: scores, ld: keys.count, batch: b, head: h, rows: rows, keys: keys, keyLength: keyLength)
}

/// Runs `body` over `0..<count` split across ``Parallel``'s threads. While more than one worker
/// runs, each does its own GEMMs, so OpenBLAS is held at one thread for the duration (two levels
/// of threading on the same cores only contend), and GEMMs of other threads wait meanwhile
/// (``BLAS/Threads``: the thread count is the process's, and results depend on it).
func forEachAttentionWorkItem(_ count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
    let workers = min(Parallel.threadCount, count / max(grain, 1))
    guard workers > 1 else {
        body(0..<count)
        return
    }
    BLAS.Threads.singleThreaded {
        Parallel.forEachRange(count, grain: grain) { range in BLAS.Threads.asRegionWorker { body(range) } }
    }
}

func attentionForward<T: ComputeScalar>(_ layout: AttentionLayout, _ query: Tensor, _ key: Tensor, _ value: Tensor,
                                        _ resolvedMask: ResolvedAttentionMask, scale: T, out: Tensor, logSumExp: Tensor) {
    guard layout.batch * layout.heads * layout.queryLength * layout.headWidth > 0 else { return }
    if layout.queryLength == 1 {
        attentionForwardSingleQuery(layout, query, key, value, resolvedMask, scale: scale, out: out, logSumExp: logSumExp)
        return
    }
    let q = HeadAddressing<T>(query), k = HeadAddressing<T>(key), v = HeadAddressing<T>(value)
    let mask = resolvedMask.pointers(T.self)
    let o = out.pointer(as: T.self), lse = logSumExp.pointer(as: T.self)
    let (tq, tk, dh) = (layout.queryLength, layout.keyLength, layout.headWidth)
    let blocksPerHead = (tq + attentionQueryBlock - 1) / attentionQueryBlock
    let itemCount = layout.batch * layout.heads * blocksPerHead
    let workPerItem = attentionQueryBlock * max(tk, 1) * dh
    forEachAttentionWorkItem(itemCount, grain: max(1, 1 << 20 / workPerItem)) { items in
        let scores = UnsafeMutablePointer<T>.allocate(capacity: attentionQueryBlock * attentionKeyBlock)
        var runningMax = [T](repeating: 0, count: attentionQueryBlock)
        var runningSum = [T](repeating: 0, count: attentionQueryBlock)
        defer { scores.deallocate() }
        for item in items {
            let (bh, index) = item.quotientAndRemainder(dividingBy: blocksPerHead)
            // Blocks in the order first, last, second, second-to-last, …: under a causal mask later
            // blocks see more keys, so contiguous ranges of items then carry similar work.
            let block = index % 2 == 0 ? index / 2 : blocksPerHead - 1 - index / 2
            let (b, h) = bh.quotientAndRemainder(dividingBy: layout.heads)
            let kvh = h / layout.groupSize
            let rows = block * attentionQueryBlock..<min((block + 1) * attentionQueryBlock, tq)
            let m = rows.count
            let vHead = v.head(b, kvh)
            let oBlock = o + (bh * tq + rows.lowerBound) * dh
            for r in 0..<m { runningMax[r] = -.infinity; runningSum[r] = 0 }
            let keyLimit = mask.keyLimit(rows: rows, keyLength: tk)
            var start = 0
            while start < keyLimit {
                let keys = start..<min(start + attentionKeyBlock, keyLimit)
                let n = keys.count
                maskedScores(q: q, k: k, mask: mask, batch: b, head: h, kvHead: kvh, rows: rows, keys: keys,
                             keyLength: tk, headWidth: dh, scale: scale, into: scores)                  // (m, n)
                // Online softmax: rescale what is accumulated when a row's maximum grows.
                for r in 0..<m {
                    let row = scores + r * n
                    let newMax = Swift.max(runningMax[r], rowMax(row, n))
                    if newMax == -.infinity {
                        // Every key so far is hidden: no weight yet.
                        for c in 0..<n { row[c] = 0 }
                        continue
                    }
                    let rowSum = rowExpSubtracting(row, newMax, n)
                    if runningMax[r] != newMax {
                        let correction = T.exp(runningMax[r] - newMax)
                        runningSum[r] *= correction
                        if runningMax[r] != -.infinity { rowScale(oBlock + r * dh, by: correction, dh) }
                        runningMax[r] = newMax
                    }
                    runningSum[r] += rowSum
                }
                // O += P·V  (m, Dh)
                gemm(.none, .none, m: m, n: dh, k: n, a: scores, lda: n, b: vHead + start * v.rowStride,
                     ldb: v.rowStride, beta: 1, c: oBlock, ldc: dh)
                start = keys.upperBound
            }
            for r in 0..<m {
                let i = bh * tq + rows.lowerBound + r
                if runningSum[r] > 0 {
                    rowScale(oBlock + r * dh, by: 1 / runningSum[r], dh)
                    lse[i] = runningMax[r] + T.log(runningSum[r])
                } else {
                    // A fully hidden row: output stays 0, and -∞ marks it for the backward.
                    lse[i] = -.infinity
                }
            }
        }
    }
}

/// Decoding with a KV cache (`Tq == 1`): one row of scores per head by dot products and the
/// output as a weighted sum of value rows — no GEMM set-up for a single row. The query heads that
/// share a kv head are handled together, so each key and value row is read from memory once per
/// group rather than once per head (decoding is bound by reading the cache).
func attentionForwardSingleQuery<T: ComputeScalar>(_ layout: AttentionLayout, _ query: Tensor, _ key: Tensor, _ value: Tensor,
                                                   _ resolvedMask: ResolvedAttentionMask, scale: T, out: Tensor, logSumExp: Tensor) {
    let q = HeadAddressing<T>(query), k = HeadAddressing<T>(key), v = HeadAddressing<T>(value)
    let mask = resolvedMask.pointers(T.self)
    let o = out.pointer(as: T.self), lse = logSumExp.pointer(as: T.self)
    let (tk, dh, group) = (layout.keyLength, layout.headWidth, layout.groupSize)
    let keyLimit = mask.keyLimit(rows: 0..<1, keyLength: tk)
    let itemCount = layout.batch * layout.kvHeads
    // No GEMM inside, so the spinning C pool rather than `forEachAttentionWorkItem` (libdispatch,
    // OpenBLAS held at one thread): a decoding step calls this once per layer. Items are
    // independent, so how they are split changes no result.
    forEachPoolRange(itemCount, grain: max(1, 1 << 17 / max(group * tk * dh, 1))) { items in
        let scores = UnsafeMutablePointer<T>.allocate(capacity: max(group * keyLimit, 1))  // (G, Tk)
        var sums = [T](repeating: 0, count: group)
        defer { scores.deallocate() }
        for item in items {
            let (b, kvh) = item.quotientAndRemainder(dividingBy: layout.kvHeads)
            let firstHead = kvh * group
            let kHead = k.head(b, kvh), vHead = v.head(b, kvh)
            // Scores: key row j against each query head of the group.
            for j in 0..<keyLimit {
                let keyRow = kHead + j * k.rowStride
                for g in 0..<group { scores[g * keyLimit + j] = scale * rowDot(q.head(b, firstHead + g), keyRow, dh) }
            }
            for g in 0..<group {
                let h = firstHead + g, row = scores + g * keyLimit
                mask.apply(to: row, ld: keyLimit, batch: b, head: h, rows: 0..<1, keys: 0..<keyLimit, keyLength: tk)
                let maximum = rowMax(row, keyLimit)
                if maximum == -.infinity {
                    // Every key hidden: output 0, and -∞ marks the row for the backward.
                    for j in 0..<keyLimit { row[j] = 0 }
                    sums[g] = 0
                    lse[b * layout.heads + h] = -.infinity
                    continue
                }
                sums[g] = rowExpSubtracting(row, maximum, keyLimit)
                lse[b * layout.heads + h] = maximum + T.log(sums[g])
            }
            // Output: value row j added to each head's output with its weight.
            let oGroup = o + (b * layout.heads + firstHead) * dh
            for j in 0..<keyLimit {
                let valueRow = vHead + j * v.rowStride
                for g in 0..<group where scores[g * keyLimit + j] != 0 {
                    rowAddScaled(scores[g * keyLimit + j], valueRow, into: oGroup + g * dh, dh)
                }
            }
            for g in 0..<group where sums[g] > 0 { rowScale(oGroup + g * dh, by: 1 / sums[g], dh) }
        }
    }
}
