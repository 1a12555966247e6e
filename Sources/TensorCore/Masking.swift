/// Filling masked positions (attention masks, padding).

extension Tensor {
    /// A copy with `value` wherever `mask` is nonzero, as `torch.Tensor.masked_fill`.
    ///
    /// `mask` is a bool, uint8, int32 or int64 (or floating-point) tensor whose shape broadcasts to
    /// this tensor's shape; the result has this tensor's shape. Typical use: `scores.maskedFill(mask,
    /// with: -.infinity)` before a softmax.
    ///
    /// Saves the mask (as bytes, in its own shape). Backward: `dx = g` where the mask is zero, 0 where
    /// it is nonzero.
    public func maskedFill(_ mask: Tensor, with value: Double) -> Tensor {
        requireComputeType("maskedFill")
        do {
            let target = try Shape.broadcast(shape, mask.shape)
            ensure(target == shape, "maskedFill: mask of shape \(mask.shape) does not broadcast to \(shape)")
        } catch {
            fatalError("maskedFill: \(error)")
        }
        let flags = mask.nonzeroBytes()
        let out = Tensor(zeros: shape, dtype: dtype)
        dispatchFloat(dtype, "maskedFill",
                      float: { fillKernel(self, flags, value, into: out, Float.self) },
                      double: { fillKernel(self, flags, value, into: out, Double.self) })
        guard Autograd.needsGraph(self) else { return out }
        out.recordOperation("maskedFill", inputs: [self]) { g in
            let dx = Tensor(zeros: g.shape, dtype: g.dtype)
            dispatchFloat(g.dtype, "maskedFill backward",
                          float: { fillKernel(g, flags, 0, into: dx, Float.self) },
                          double: { fillKernel(g, flags, 0, into: dx, Double.self) })
            return [dx]
        }
        return out
    }

    /// A contiguous uint8 tensor of this tensor's shape: 1 where an element is nonzero, else 0.
    func nonzeroBytes() -> Tensor {
        let source = contiguousStorageView()
        let out = Tensor(zeros: shape, dtype: .uint8)
        let o = out.rawPointer.assumingMemoryBound(to: UInt8.self)
        let raw = source.rawPointer
        let n = elementCount
        switch dtype {
        case .bool, .uint8:
            let p = raw.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n { o[i] = p[i] != 0 ? 1 : 0 }
        case .int32:
            let p = raw.assumingMemoryBound(to: Int32.self)
            for i in 0..<n { o[i] = p[i] != 0 ? 1 : 0 }
        case .int64:
            let p = raw.assumingMemoryBound(to: Int64.self)
            for i in 0..<n { o[i] = p[i] != 0 ? 1 : 0 }
        default:
            for (i, v) in source.floats().enumerated() { o[i] = v != 0 ? 1 : 0 }
        }
        return out
    }
}

/// `out = flags ? value : x`, with `flags` (uint8) broadcast to `x`'s shape.
@inline(__always)
private func fillKernel<T: ComputeScalar>(_ x: Tensor, _ flags: Tensor, _ value: Double, into out: Tensor, _: T.Type) {
    let input = x.contiguousStorageView()
    let px = input.pointer(as: T.self), po = out.pointer(as: T.self)
    let pm = flags.rawPointer.assumingMemoryBound(to: UInt8.self)
    let fill = T(value)
    let shape = out.shape
    let loop = StridedRows(shape: shape, operandStrides: [flags.broadcastStrides(to: shape)])
    let n = loop.rowLength
    let stride = flags.broadcastStrides(to: shape).last ?? 0
    Parallel.forEachRange(loop.rowCount, grain: max(1, 32_768 / max(n, 1))) { rows in
        loop.forEachRow(in: rows) { row, offsets in
            let x = px + row * n, o = po + row * n, m = pm + offsets[0]
            if stride == 1 {
                for i in 0..<n { o[i] = m[i] != 0 ? fill : x[i] }
            } else if stride == 0 {
                if m[0] != 0 { for i in 0..<n { o[i] = fill } } else { for i in 0..<n { o[i] = x[i] } }
            } else {
                for i in 0..<n { o[i] = m[i * stride] != 0 ? fill : x[i] }
            }
        }
    }
}
