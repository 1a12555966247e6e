/// Matrix products through BLAS: `matmul` (batched, broadcasting) and `linear` (with bf16/fp16
/// weights upcast block by block inside the product).

/// How BLAS should read the last two axes of a tensor, if it can read them in place.
private struct MatrixOperand {
    let transpose: BLAS.Transpose
    let leadingDimension: Int

    /// Nil when the last two axes are neither row-major nor column-major (a copy is needed).
    init?(_ t: Tensor) {
        let rows = t.shape[t.rank - 2], cols = t.shape[t.rank - 1]
        let rowStride = t.strides[t.rank - 2], colStride = t.strides[t.rank - 1]
        if colStride == 1 && (rowStride >= max(cols, 1) || rows == 1) {
            transpose = .none
            leadingDimension = max(rowStride, cols, 1)
        } else if rowStride == 1 && (colStride >= max(rows, 1) || cols == 1) {
            transpose = .transposed
            leadingDimension = max(colStride, rows, 1)
        } else {
            return nil
        }
    }
}

/// Element offsets of every matrix in the (broadcast) batch, per operand.
private func batchOffsets(_ t: Tensor, batchShape: [Int]) -> [Int] {
    let lead = batchShape.count - (t.rank - 2)
    let strides: [Int] = (0..<batchShape.count).map { axis in
        guard axis >= lead, t.shape[axis - lead] != 1 else { return 0 }
        return t.strides[axis - lead]
    }
    var offsets = [Int]()
    offsets.reserveCapacity(Shape.elementCount(batchShape))
    let loop = StridedRows(shape: batchShape + [1], operandStrides: [strides + [0]])
    loop.forEachRow(in: 0..<loop.rowCount) { _, o in offsets.append(o[0]) }
    return offsets
}

@inline(__always)
private func batchedProduct<T: ComputeScalar>(_ a: Tensor, _ b: Tensor, into out: Tensor, batchShape: [Int], _: T.Type) {
    let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
    let pa = a.pointer(as: T.self), pb = b.pointer(as: T.self), pc = out.pointer(as: T.self)
    guard m > 0, n > 0 else { return }
    guard k > 0 else { return }  // the product of empty inner dimensions is the zeros already there
    let opA = MatrixOperand(a)!, opB = MatrixOperand(b)!
    // A shared right operand and a row-major left operand flatten into a single GEMM.
    if b.rank == 2 && opA.transpose == .none && a.isContiguous {
        gemm(.none, opB.transpose, m: a.elementCount / k, n: n, k: k, a: pa, lda: k,
             b: pb, ldb: opB.leadingDimension, c: pc, ldc: n)
        return
    }
    let offsetsA = batchOffsets(a, batchShape: batchShape), offsetsB = batchOffsets(b, batchShape: batchShape)
    for (index, (oa, ob)) in zip(offsetsA, offsetsB).enumerated() {
        gemm(opA.transpose, opB.transpose, m: m, n: n, k: k, a: pa + oa, lda: opA.leadingDimension,
             b: pb + ob, ldb: opB.leadingDimension, c: pc + index * m * n, ldc: n)
    }
}

extension Tensor {
    /// The matrix product over the last two axes, `[..., M, K] · [..., K, N] → [..., M, N]`, with
    /// the leading (batch) axes broadcast. Transposed views go to BLAS as flags, not copies.
    ///
    /// Backward: `dA = dC · Bᵀ`, `dB = Aᵀ · dC`, each summed over the batch axes it was broadcast along.
    public func matmul(_ other: Tensor) -> Tensor {
        ensure(rank >= 2 && other.rank >= 2,
                     "matmul needs operands of rank ≥ 2, got \(shape) and \(other.shape)")
        ensure(dtype == other.dtype && dtype.isComputeType,
                     "matmul needs two float32 or two float64 operands, got \(dtype) and \(other.dtype)")
        let m = shape[rank - 2], k = shape[rank - 1], k2 = other.shape[other.rank - 2], n = other.shape[other.rank - 1]
        ensure(k == k2, "matmul: inner dimensions differ: \(shape) · \(other.shape) (\(k) vs \(k2))")
        let batchShape: [Int]
        do { batchShape = try Shape.broadcast(Array(shape.dropLast(2)), Array(other.shape.dropLast(2))) } catch {
            fatalError("matmul: batch axes of \(shape) and \(other.shape) cannot broadcast: \(error)")
        }
        let a = MatrixOperand(self) == nil ? contiguous() : self
        let b = MatrixOperand(other) == nil ? other.contiguous() : other
        // Every element is written by BLAS (beta = 0) unless the inner dimension is empty.
        let out = k > 0 ? Tensor(uninitialized: batchShape + [m, n], dtype: dtype) : Tensor(zeros: batchShape + [m, n], dtype: dtype)
        dispatchFloat(dtype, "matmul",
                      float: { batchedProduct(a, b, into: out, batchShape: batchShape, Float.self) },
                      double: { batchedProduct(a, b, into: out, batchShape: batchShape, Double.self) })
        if Autograd.needsGraph(self, other) {
            // Saves both operands (views, no copies).
            let lhs = detached(), rhs = other.detached()
            let lhsNeeds = requiresGrad, rhsNeeds = other.requiresGrad
            out.recordOperation("matmul", inputs: [self, other]) { g in
                [lhsNeeds ? g.matmul(rhs.transposed()).sum(toShape: lhs.shape) : nil,
                 rhsNeeds ? Tensor.rightOperandGradient(lhs: lhs, outputGradient: g, rhsShape: rhs.shape) : nil]
            }
        }
        return out
    }
}

extension Tensor {
    /// `Aᵀ · dC` summed to the right operand's shape; a shared 2-D right operand takes one GEMM over
    /// all batch rows instead of a batched product and a sum.
    fileprivate static func rightOperandGradient(lhs: Tensor, outputGradient g: Tensor, rhsShape: [Int]) -> Tensor {
        if rhsShape.count == 2 && lhs.rank > 2 {
            let k = lhs.shape[lhs.rank - 1], n = g.shape[g.rank - 1]
            return lhs.reshaped([-1, k]).transposed().matmul(g.reshaped([-1, n]))
        }
        return lhs.transposed().matmul(g).sum(toShape: rhsShape)
    }
}
