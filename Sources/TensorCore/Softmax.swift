/// Softmax and log-softmax, numerically stable (the row maximum is subtracted before `exp`).
///
/// The kernels work on the last axis; another axis is first swapped to the end (a view) and the
/// result swapped back into a contiguous tensor. A row whose entries are all −∞ gives NaN, as in
/// PyTorch; −∞ entries in an otherwise finite row give probability 0 (log-probability −∞).

extension Tensor {
    /// `softmax(x)ᵢ = exp(xᵢ − max x) / Σⱼ exp(xⱼ − max x)` along `axis` (the last by default).
    ///
    /// Saves the output `y` only. Backward: `dx = y·(g − Σ g·y)`, the sum along `axis`.
    public func softmax(axis: Int = -1) -> Tensor {
        alongLastAxis(axis) { $0.lastAxisSoftmax(logarithm: false) }
    }

    /// `logSoftmax(x)ᵢ = xᵢ − max x − log Σⱼ exp(xⱼ − max x)` along `axis` (the last by default).
    ///
    /// Saves the output `y` only. Backward: `dx = g − exp(y)·Σ g`, the sum along `axis`.
    public func logSoftmax(axis: Int = -1) -> Tensor {
        alongLastAxis(axis) { $0.lastAxisSoftmax(logarithm: true) }
    }

    /// Applies a last-axis operation along `axis` by swapping it with the last axis and back.
    private func alongLastAxis(_ axis: Int, _ operation: (Tensor) -> Tensor) -> Tensor {
        ensure(rank >= 1, "softmax needs at least one axis, got a scalar")
        let axis = Shape.normalize(axis: axis, rank: rank)
        if axis == rank - 1 { return operation(self) }
        return operation(transposed(axis, -1)).transposed(axis, -1).contiguous()
    }

    private func lastAxisSoftmax(logarithm: Bool) -> Tensor {
        let name = logarithm ? "logSoftmax" : "softmax"
        requireComputeType(name)
        let width = shape[rank - 1]
        let rows = width == 0 ? 0 : elementCount / width
        let x = contiguousStorageView()
        let out = Tensor(zeros: shape, dtype: dtype)
        dispatchFloat(dtype, name,
                      float: { softmaxForward(x, out, rows: rows, width: width, logarithm: logarithm, Float.self) },
                      double: { softmaxForward(x, out, rows: rows, width: width, logarithm: logarithm, Double.self) })
        guard Autograd.needsGraph(self) else { return out }
        let savedOutput = out.detached()
        out.recordOperation(name, inputs: [self]) { g in
            let g = g.contiguousStorageView()
            let dx = Tensor(zeros: g.shape, dtype: g.dtype)
            dispatchFloat(g.dtype, name + " backward",
                          float: { softmaxBackward(savedOutput, g, dx, rows: rows, width: width, logarithm: logarithm, Float.self) },
                          double: { softmaxBackward(savedOutput, g, dx, rows: rows, width: width, logarithm: logarithm, Double.self) })
            return [dx]
        }
        return out
    }
}

@inline(__always)
private func softmaxForward<T: RowScalar>(_ x: Tensor, _ out: Tensor, rows: Int, width d: Int,
                                          logarithm: Bool, _: T.Type) {
    let px = x.pointer(as: T.self), po = out.pointer(as: T.self)
    Parallel.forEachRange(rows, grain: rowGrain(d)) { range in
        for row in range {
            let xr = px + row * d, yr = po + row * d
            let m = RowKernels.maximum(xr, d)
            if logarithm {
                let shift = m + T.log(RowKernels.exponentials(xr, d, shift: m, into: nil))
                var i = 0
                while i + 16 <= d { store16(load16(xr + i) - shift, yr + i); i += 16 }
                while i < d { yr[i] = xr[i] - shift; i += 1 }
            } else {
                let total = RowKernels.exponentials(xr, d, shift: m, into: yr)
                RowKernels.scale(yr, d, by: 1 / total)
            }
        }
    }
}

@inline(__always)
private func softmaxBackward<T: RowScalar>(_ y: Tensor, _ gradient: Tensor, _ dx: Tensor, rows: Int, width d: Int,
                                           logarithm: Bool, _: T.Type) {
    let py = y.pointer(as: T.self), pg = gradient.pointer(as: T.self), pd = dx.pointer(as: T.self)
    Parallel.forEachRange(rows, grain: rowGrain(d)) { range in
        for row in range {
            let yr = py + row * d, gr = pg + row * d, dr = pd + row * d
            if logarithm {
                // dx = g − exp(y)·Σg: the exponentials go straight into dx, scaled by −Σg.
                let total = RowKernels.sum(gr, d)
                _ = RowKernels.exponentials(yr, d, shift: 0, into: dr, scale: -total)
                var i = 0
                while i + 16 <= d { store16(load16(dr + i) + load16(gr + i), dr + i); i += 16 }
                while i < d { dr[i] += gr[i]; i += 1 }
            } else {
                let s = RowKernels.dot(gr, yr, d)
                var i = 0
                while i + 16 <= d { store16(load16(yr + i) * (load16(gr + i) - s), dr + i); i += 16 }
                while i < d { dr[i] = yr[i] * (gr[i] - s); i += 1 }
            }
        }
    }
}
