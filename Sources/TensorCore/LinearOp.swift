/// `y = x · Wᵀ + b`, the workhorse of every model. Weights may be float32 or a frozen bfloat16 /
/// float16 tensor, which is upcast one block of rows at a time inside the product (never as a
/// whole fp32 copy).

/// Rows of a 16-bit weight upcast per block: big enough for an efficient GEMM, small enough to
/// stay in cache.
private let upcastBlockElements = 256 * 1024

/// Up to this many input rows (decoding, batched decoding), products use the matrix-vector
/// kernels, which stream each weight once for all rows, instead of GEMM, which packs its operands
/// (for one row that copies every weight once per token) or, for a 16-bit weight, widens it.
private let matrixVectorRowLimit = 8

/// Converts rows `rows` of a `[n, k]` 16-bit matrix to float32 in `buffer`.
private func upcastRows(_ weight: Tensor, rows: Range<Int>, k: Int, into buffer: UnsafeMutablePointer<Float>) {
    let bits = weight.rawPointer.assumingMemoryBound(to: UInt16.self) + rows.lowerBound * k
    let count = rows.count * k
    if weight.dtype == .bfloat16 {
        BFloat16Kernels.widen(bits, into: buffer, count: count)
    } else {
        for i in 0..<count { buffer[i] = Float(Float16(bitPattern: bits[i])) }
    }
}

/// Calls `body(rows, upcastBlock)` for consecutive blocks of rows of a 16-bit `[n, k]` weight.
private func forEachUpcastBlock(of weight: Tensor, n: Int, k: Int,
                                _ body: (Range<Int>, UnsafePointer<Float>) -> Void) {
    let blockRows = max(16, upcastBlockElements / max(k, 1))
    // A tensor, not a raw allocation: its storage comes from the buffer pool, so the ~60 products
    // of a forward pass reuse one block instead of mapping and faulting in a fresh megabyte each.
    let block = Tensor(uninitialized: [min(blockRows, n) * k])
    let buffer = block.floatPointer
    defer { withExtendedLifetime(block) {} }
    var start = 0
    while start < n {
        let rows = start..<min(start + blockRows, n)
        upcastRows(weight, rows: rows, k: k, into: buffer)
        body(rows, buffer)
        start = rows.upperBound
    }
}

/// `out[m, n] = x[m, k] · W[n, k]ᵀ (+ out when accumulate)` for a weight of any float dtype.
/// `accumulate` false overwrites `out` (which may be uninitialised).
private func productWithTransposedWeight(_ x: UnsafePointer<Float>, _ weight: Tensor, m: Int, n: Int, k: Int,
                                         into out: UnsafeMutablePointer<Float>, accumulate: Bool) {
    let beta: Float = accumulate ? 1 : 0
    if m <= matrixVectorRowLimit && weight.dtype == .float32 {
        MatrixVector.product(weight: weight.floatPointer, x: x, y: out, m: m, n: n, k: k, accumulate: accumulate)
        return
    }
    if m <= matrixVectorRowLimit && weight.dtype == .bfloat16 {
        MatrixVector.product(bfloat16Weight: weight.rawPointer.assumingMemoryBound(to: UInt16.self), x: x, y: out,
                             m: m, n: n, k: k, accumulate: accumulate)
        return
    }
    if weight.dtype == .float32 {
        BLAS.gemm(.none, .transposed, m: m, n: n, k: k, a: x, lda: k, b: weight.floatPointer, ldb: k,
                  beta: beta, c: out, ldc: n)
        return
    }
    forEachUpcastBlock(of: weight, n: n, k: k) { rows, block in
        BLAS.gemm(.none, .transposed, m: m, n: rows.count, k: k, a: x, lda: k, b: block, ldb: k,
                  beta: beta, c: out + rows.lowerBound, ldc: n)
    }
}

/// `dx[m, k] = dy[m, n] · W[n, k]` for a weight of any float dtype.
private func productWithWeight(_ dy: UnsafePointer<Float>, _ weight: Tensor, m: Int, n: Int, k: Int,
                               into dx: UnsafeMutablePointer<Float>) {
    if weight.dtype == .float32 {
        BLAS.gemm(.none, .none, m: m, n: k, k: n, a: dy, lda: n, b: weight.floatPointer, ldb: k, c: dx, ldc: k)
        return
    }
    forEachUpcastBlock(of: weight, n: n, k: k) { rows, block in
        BLAS.gemm(.none, .none, m: m, n: k, k: rows.count, a: dy + rows.lowerBound, lda: n, b: block, ldb: k,
                  beta: rows.lowerBound == 0 ? 0 : 1, c: dx, ldc: k)
    }
}

extension Tensor {
    /// The affine map `x · weightᵀ + bias` over the last axis: `[..., K] → [..., N]` for a weight of
    /// shape `[N, K]` (Hugging Face's `nn.Linear` layout) and an optional bias `[N]`.
    ///
    /// The weight may be float32 or a bfloat16/float16 tensor that does not require gradients.
    /// Backward: `dx = dy · W`, `dW = dyᵀ · x`, `db = Σ dy` over all leading axes. Inside a
    /// ``BFloat16Linear`` scope the products take bf16 operands (float32 sums).
    public func linear(weight: Tensor, bias: Tensor? = nil) -> Tensor {
        ensure(weight.rank == 2, "linear: weight must be [out, in], got \(weight.shape)")
        let n = weight.shape[0], k = weight.shape[1]
        ensure(size(-1) == k, "linear: input \(shape) does not end in the weight's input size \(k) (weight \(weight.shape))")
        if let bias { ensure(bias.shape == [n], "linear: bias \(bias.shape) does not match the weight's output size \(n)") }
        if dtype == .float64 || weight.dtype == .float64 {
            // Gradient checks: compose from matmul in double precision.
            let product = matmul(weight.transposed())
            return bias.map { product + $0 } ?? product
        }
        ensure(dtype == .float32, "linear: input must be float32, got \(dtype)")
        ensure(weight.dtype.isFloatingPoint && (weight.dtype == .float32 || !weight.requiresGrad),
                     "linear: weight must be float32, or a 16-bit float that does not require gradients (got \(weight.dtype))")
        let x = contiguous()
        let w = weight.isContiguous ? weight : weight.contiguous()
        let m = elementCount / max(k, 1)
        // With a bias, every row is first set to it and beta = 1 below accumulates onto it; without
        // one, the GEMM overwrites the output. Either way no zero-fill (one more pass over memory),
        // except for an empty product without a bias.
        let out = bias != nil || (m > 0 && k > 0) ? Tensor(uninitialized: Array(shape.dropLast()) + [n])
                                                  : Tensor(zeros: Array(shape.dropLast()) + [n])
        if let bias {
            // A frozen 16-bit bias is tiny: upcast it whole.
            let bias32 = bias.dtype == .float32 ? bias.contiguous() : bias.converted(to: .float32)
            withExtendedLifetime(bias32) {
                let b = bias32.floatPointer, o = out.floatPointer
                for row in 0..<m { (o + row * n).update(from: b, count: n) }
            }
        }
        // Inside a BFloat16Linear scope, training-sized products (not decoding's few rows) round
        // their operands to bf16; the backward below uses the scope its forward saw.
        let mixed = m > matrixVectorRowLimit && w.isContiguous ? BFloat16Linear.active : nil
        if m > 0 && k > 0 {
            if let mixed, let b = mixed.operand(for: w, trainable: weight.requiresGrad, n: n, k: k, forward: true) {
                BFloat16GEMM.multiply(.none, m: m, n: n, k: k, a: x.floatPointer, lda: k, b: b, accumulate: bias != nil,
                                      c: out.floatPointer, ldc: n)
            } else {
                productWithTransposedWeight(x.floatPointer, w, m: m, n: n, k: k, into: out.floatPointer, accumulate: bias != nil)
            }
        }

        guard Autograd.needsGraph(self, weight) || (bias.map { Autograd.needsGraph($0) } ?? false) else { return out }
        // Saves the input (for dW) and the weight (for dx).
        let savedInput = x.detached(), savedWeight = w.detached()
        let inputNeeds = requiresGrad, weightNeeds = weight.requiresGrad, biasNeeds = bias?.requiresGrad ?? false
        let inputShape = shape
        out.recordOperation("linear", inputs: [self, weight] + (bias.map { [$0] } ?? [])) { g in
            let dy = g.contiguous()
            var gradients: [Tensor?] = []
            if inputNeeds && m > 0 && k > 0 {
                let dx = Tensor(uninitialized: inputShape)  // written in full by the first GEMM (beta = 0)
                if let mixed, let b = mixed.operand(for: savedWeight, trainable: weightNeeds, n: n, k: k, forward: false) {
                    BFloat16GEMM.multiply(.none, m: m, n: k, k: n, a: dy.floatPointer, lda: n, b: b, accumulate: false,
                                          c: dx.floatPointer, ldc: k)
                } else {
                    productWithWeight(dy.floatPointer, savedWeight, m: m, n: n, k: k, into: dx.floatPointer)
                }
                gradients.append(dx)
            } else if inputNeeds {
                gradients.append(Tensor(zeros: inputShape))
            } else {
                gradients.append(nil)
            }
            if weightNeeds && m > 0 {
                let dw = Tensor(uninitialized: [n, k])
                if let mixed, mixed.convertsTrainableWeights {
                    BFloat16GEMM.multiply(.transposed, m: n, n: k, k: m, a: dy.floatPointer, lda: n,
                                          b: .matrix(.none, savedInput.floatPointer, ldb: k), accumulate: false,
                                          c: dw.floatPointer, ldc: k)
                } else {
                    BLAS.gemm(.transposed, .none, m: n, n: k, k: m, a: dy.floatPointer, lda: n,
                              b: savedInput.floatPointer, ldb: k, c: dw.floatPointer, ldc: k)
                }
                gradients.append(dw)
            } else if weightNeeds {
                gradients.append(Tensor(zeros: [n, k]))
            } else {
                gradients.append(nil)
            }
            if bias != nil { gradients.append(biasNeeds ? dy.reshaped([m, n]).sum(axes: [0]) : nil) }
            return gradients
        }
        return out
    }
}
