/// RMSNorm and LayerNorm over the last axis, each with a fused forward and a fused backward.
///
/// Both compute in the input's own type (float32, or float64 for gradient checks), as
/// `LlamaRMSNorm` upcasts to float32 before normalising. A 16-bit (bfloat16 / float16) weight or
/// bias is upcast once per call. Rows are split across cores; parameter gradients are summed per
/// chunk of rows and then combined.

extension Tensor {
    /// RMS normalisation over the last axis, as `LlamaRMSNorm`:
    /// `y = weight · x / √(mean(x²) + ε)`, the mean taken over the last axis.
    ///
    /// Saves `x` and the per-row `r = 1/√(mean(x²) + ε)` only.
    /// Backward, with `D` the width: `dx = r·(g·w) − x·r³·Σ(g·w·x)/D`, `dw = Σ_rows g·x·r`.
    ///
    /// - Parameters:
    ///   - weight: the `[D]` scale, or `nil` for none (any floating-point dtype; 16-bit is upcast).
    ///   - epsilon: added to the mean square (`rms_norm_eps`, 1e-5 in Llama 3.2).
    public func rmsNorm(weight: Tensor?, epsilon: Double) -> Tensor {
        requireComputeType("rmsNorm")
        ensure(rank >= 1, "rmsNorm needs at least one axis, got a scalar")
        let width = shape[rank - 1]
        let w = weight.map { normalizationParameter($0, role: "rmsNorm weight", width: width) }
        let x = contiguousStorageView()
        let rows = width == 0 ? 0 : elementCount / width
        let out = Tensor(uninitialized: shape, dtype: dtype)  // every row written
        let rstd = Tensor(zeros: [rows], dtype: dtype)
        dispatchFloat(dtype, "rmsNorm",
                      float: { rmsNormForward(x, w, out, rstd, rows: rows, width: width, epsilon: epsilon, Float.self) },
                      double: { rmsNormForward(x, w, out, rstd, rows: rows, width: width, epsilon: epsilon, Double.self) })
        let inputs = [self] + (w.map { [$0] } ?? [])
        guard Autograd.needsGraph(inputs) else { return out }
        let savedX = x.detached(), savedWeight = w?.detached()
        let inputNeeds = requiresGrad, weightNeeds = w?.requiresGrad ?? false
        out.recordOperation("rmsNorm", inputs: inputs) { g in
            let g = g.contiguousStorageView()
            let dx = inputNeeds ? Tensor(zeros: savedX.shape, dtype: savedX.dtype) : nil
            let dw = weightNeeds ? Tensor(zeros: [width], dtype: savedX.dtype) : nil
            dispatchFloat(savedX.dtype, "rmsNorm backward",
                          float: { rmsNormBackward(savedX, savedWeight, rstd, g, dx, dw, rows: rows, width: width, Float.self) },
                          double: { rmsNormBackward(savedX, savedWeight, rstd, g, dx, dw, rows: rows, width: width, Double.self) })
            return savedWeight == nil ? [dx] : [dx, dw]
        }
        return out
    }

    /// Layer normalisation over the last axis with the biased variance, as `torch.nn.LayerNorm`:
    /// `y = (x − μ)/√(σ² + ε) · weight + bias`.
    ///
    /// Saves `x` and the per-row statistics `μ` and `r = 1/√(σ² + ε)` only.
    /// Backward, with `x̂ = (x − μ)·r` and `ĝ = g·w`:
    /// `dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))`, `dw = Σ_rows g·x̂`, `db = Σ_rows g`.
    ///
    /// - Parameters:
    ///   - weight: the `[D]` scale, or `nil` for none.
    ///   - bias: the `[D]` shift, or `nil` for none.
    ///   - epsilon: added to the variance (`layer_norm_eps`, 1e-5 or 1e-6 in vision towers).
    public func layerNorm(weight: Tensor?, bias: Tensor?, epsilon: Double) -> Tensor {
        requireComputeType("layerNorm")
        ensure(rank >= 1, "layerNorm needs at least one axis, got a scalar")
        let width = shape[rank - 1]
        let w = weight.map { normalizationParameter($0, role: "layerNorm weight", width: width) }
        let b = bias.map { normalizationParameter($0, role: "layerNorm bias", width: width) }
        let x = contiguousStorageView()
        let rows = width == 0 ? 0 : elementCount / width
        let out = Tensor(uninitialized: shape, dtype: dtype)  // every row written
        let mean = Tensor(zeros: [rows], dtype: dtype), rstd = Tensor(zeros: [rows], dtype: dtype)
        dispatchFloat(dtype, "layerNorm",
                      float: { layerNormForward(x, w, b, out, mean, rstd, rows: rows, width: width, epsilon: epsilon, Float.self) },
                      double: { layerNormForward(x, w, b, out, mean, rstd, rows: rows, width: width, epsilon: epsilon, Double.self) })
        let inputs = [self] + (w.map { [$0] } ?? []) + (b.map { [$0] } ?? [])
        guard Autograd.needsGraph(inputs) else { return out }
        let savedX = x.detached(), savedWeight = w?.detached()
        let inputNeeds = requiresGrad, weightNeeds = w?.requiresGrad ?? false, biasNeeds = b?.requiresGrad ?? false
        let hasBias = b != nil
        out.recordOperation("layerNorm", inputs: inputs) { g in
            let g = g.contiguousStorageView()
            let dtype = savedX.dtype
            let dx = inputNeeds ? Tensor(zeros: savedX.shape, dtype: dtype) : nil
            let dw = weightNeeds ? Tensor(zeros: [width], dtype: dtype) : nil
            let db = biasNeeds ? Tensor(zeros: [width], dtype: dtype) : nil
            dispatchFloat(dtype, "layerNorm backward",
                          float: { layerNormBackward(savedX, savedWeight, mean, rstd, g, dx, dw, db,
                                                     rows: rows, width: width, Float.self) },
                          double: { layerNormBackward(savedX, savedWeight, mean, rstd, g, dx, dw, db,
                                                      rows: rows, width: width, Double.self) })
            var grads: [Tensor?] = [dx]
            if savedWeight != nil { grads.append(dw) }
            if hasBias { grads.append(db) }
            return grads
        }
        return out
    }

    /// A `[D]` weight or bias in this tensor's dtype, contiguous (16-bit storage types upcast).
    private func normalizationParameter(_ parameter: Tensor, role: String, width: Int) -> Tensor {
        ensure(parameter.shape == [width],
                     "\(role) of shape \(parameter.shape) does not match the last axis of \(shape) (expected [\(width)])")
        ensure(parameter.dtype.isFloatingPoint, "\(role) must be floating-point, got \(parameter.dtype)")
        let converted = parameter.dtype == dtype ? parameter : parameter.converted(to: dtype)
        return converted.contiguous()
    }
}

/// A `[count]` buffer of ones, standing in for an absent weight so that one loop serves both cases.
private func ones<T: RowScalar>(_ count: Int, _: T.Type) -> UnsafeMutablePointer<T> {
    let p = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
    p.initialize(repeating: 1, count: count)
    return p
}

// MARK: - RMSNorm kernels

@inline(__always)
private func rmsNormForward<T: RowScalar>(_ x: Tensor, _ weight: Tensor?, _ out: Tensor, _ rstd: Tensor,
                                          rows: Int, width d: Int, epsilon: Double, _: T.Type) {
    let px = x.pointer(as: T.self), po = out.pointer(as: T.self), pr = rstd.pointer(as: T.self)
    let unit = weight == nil ? ones(d, T.self) : nil
    defer { unit?.deallocate() }
    let pw = weight?.pointer(as: T.self) ?? unit!
    let eps = T(epsilon), count = T(d)
    Parallel.forEachRange(rows, grain: rowGrain(d)) { range in
        for row in range {
            let xr = px + row * d, yr = po + row * d
            let r = 1 / (RowKernels.sumOfSquares(xr, d) / count + eps).squareRoot()
            pr[row] = r
            var i = 0
            while i + 16 <= d { store16(load16(xr + i) * r * load16(pw + i), yr + i); i += 16 }
            while i < d { yr[i] = xr[i] * r * pw[i]; i += 1 }
        }
    }
}

@inline(__always)
private func rmsNormBackward<T: RowScalar>(_ x: Tensor, _ weight: Tensor?, _ rstd: Tensor, _ gradient: Tensor,
                                           _ dx: Tensor?, _ dw: Tensor?, rows: Int, width d: Int, _: T.Type) {
    let px = x.pointer(as: T.self), pr = rstd.pointer(as: T.self), pg = gradient.pointer(as: T.self)
    let unit = weight == nil ? ones(d, T.self) : nil
    defer { unit?.deallocate() }
    let pw = weight?.pointer(as: T.self) ?? unit!
    let pdx = dx?.pointer(as: T.self)
    let chunks = Parallel.chunkCount(rows, grain: rowGrain(d))
    // One partial weight gradient per chunk of rows.
    let partials: UnsafeMutablePointer<T>? = dw == nil ? nil : .allocate(capacity: chunks * d)
    partials?.initialize(repeating: 0, count: chunks * d)
    defer { partials?.deallocate() }
    let count = T(d)
    Parallel.forEachChunk(rows, chunks: chunks) { range, chunk in
        let partial = partials.map { $0 + chunk * d }
        for row in range {
            let xr = px + row * d, gr = pg + row * d, r = pr[row]
            if let pdx {
                // Σ g·w·x over the row.
                var acc = SIMD16<T>(repeating: 0)
                var i = 0
                while i + 16 <= d { acc += load16(gr + i) * load16(pw + i) * load16(xr + i); i += 16 }
                var s = acc.sum()
                while i < d { s += gr[i] * pw[i] * xr[i]; i += 1 }
                let c = r * r * r * s / count
                let dr = pdx + row * d
                i = 0
                while i + 16 <= d {
                    let v = load16(gr + i) * load16(pw + i) * r - load16(xr + i) * c
                    store16(v, dr + i)
                    i += 16
                }
                while i < d { dr[i] = gr[i] * pw[i] * r - xr[i] * c; i += 1 }
            }
            if let partial {
                var i = 0
                while i + 16 <= d { store16(load16(partial + i) + load16(gr + i) * load16(xr + i) * r, partial + i); i += 16 }
                while i < d { partial[i] += gr[i] * xr[i] * r; i += 1 }
            }
        }
    }
    if let dw, let partials { sumChunks(partials, chunks: chunks, width: d, into: dw.pointer(as: T.self)) }
}

/// `out[j] = Σ_c partials[c·width + j]`.
@inline(__always)
func sumChunks<T: RowScalar>(_ partials: UnsafeMutablePointer<T>, chunks: Int, width: Int,
                             into out: UnsafeMutablePointer<T>) {
    for j in 0..<width { out[j] = partials[j] }
    for c in 1..<max(chunks, 1) {
        let p = partials + c * width
        for j in 0..<width { out[j] += p[j] }
    }
}

// MARK: - LayerNorm kernels

@inline(__always)
private func layerNormForward<T: RowScalar>(_ x: Tensor, _ weight: Tensor?, _ bias: Tensor?, _ out: Tensor,
                                            _ mean: Tensor, _ rstd: Tensor, rows: Int, width d: Int,
                                            epsilon: Double, _: T.Type) {
    let px = x.pointer(as: T.self), po = out.pointer(as: T.self)
    let pm = mean.pointer(as: T.self), pr = rstd.pointer(as: T.self)
    let unit = weight == nil ? ones(d, T.self) : nil
    defer { unit?.deallocate() }
    let pw = weight?.pointer(as: T.self) ?? unit!
    let pb = bias?.pointer(as: T.self)
    let eps = T(epsilon), count = T(d)
    Parallel.forEachRange(rows, grain: rowGrain(d)) { range in
        for row in range {
            let xr = px + row * d, yr = po + row * d
            // Two passes (mean, then squared deviations) for a variance free of cancellation.
            let mu = RowKernels.sum(xr, d) / count
            let r = 1 / (RowKernels.sumOfSquaredDeviations(xr, d, from: mu) / count + eps).squareRoot()
            pm[row] = mu
            pr[row] = r
            var i = 0
            if let pb {
                while i + 16 <= d {
                    store16((load16(xr + i) - mu) * r * load16(pw + i) + load16(pb + i), yr + i)
                    i += 16
                }
                while i < d { yr[i] = (xr[i] - mu) * r * pw[i] + pb[i]; i += 1 }
            } else {
                while i + 16 <= d { store16((load16(xr + i) - mu) * r * load16(pw + i), yr + i); i += 16 }
                while i < d { yr[i] = (xr[i] - mu) * r * pw[i]; i += 1 }
            }
        }
    }
}

@inline(__always)
private func layerNormBackward<T: RowScalar>(_ x: Tensor, _ weight: Tensor?, _ mean: Tensor, _ rstd: Tensor,
                                             _ gradient: Tensor, _ dx: Tensor?, _ dw: Tensor?, _ db: Tensor?,
                                             rows: Int, width d: Int, _: T.Type) {
    let px = x.pointer(as: T.self), pg = gradient.pointer(as: T.self)
    let pm = mean.pointer(as: T.self), pr = rstd.pointer(as: T.self)
    let unit = weight == nil ? ones(d, T.self) : nil
    defer { unit?.deallocate() }
    let pw = weight?.pointer(as: T.self) ?? unit!
    let pdx = dx?.pointer(as: T.self)
    let chunks = Parallel.chunkCount(rows, grain: rowGrain(d))
    let weightPartials: UnsafeMutablePointer<T>? = dw == nil ? nil : .allocate(capacity: chunks * d)
    let biasPartials: UnsafeMutablePointer<T>? = db == nil ? nil : .allocate(capacity: chunks * d)
    weightPartials?.initialize(repeating: 0, count: chunks * d)
    biasPartials?.initialize(repeating: 0, count: chunks * d)
    defer { weightPartials?.deallocate(); biasPartials?.deallocate() }
    let count = T(d)
    Parallel.forEachChunk(rows, chunks: chunks) { range, chunk in
        let wp = weightPartials.map { $0 + chunk * d }, bp = biasPartials.map { $0 + chunk * d }
        for row in range {
            let xr = px + row * d, gr = pg + row * d, mu = pm[row], r = pr[row]
            if let pdx {
                // mean(ĝ) and mean(ĝ·x̂), with ĝ = g·w and x̂ = (x − μ)·r.
                var accG = SIMD16<T>(repeating: 0), accGX = SIMD16<T>(repeating: 0)
                var i = 0
                while i + 16 <= d {
                    let gw = load16(gr + i) * load16(pw + i)
                    accG += gw
                    accGX += gw * ((load16(xr + i) - mu) * r)
                    i += 16
                }
                var sumG = accG.sum(), sumGX = accGX.sum()
                while i < d { let gw = gr[i] * pw[i]; sumG += gw; sumGX += gw * ((xr[i] - mu) * r); i += 1 }
                let meanG = sumG / count, meanGX = sumGX / count
                let dr = pdx + row * d
                i = 0
                while i + 16 <= d {
                    let xhat = (load16(xr + i) - mu) * r
                    store16((load16(gr + i) * load16(pw + i) - meanG - xhat * meanGX) * r, dr + i)
                    i += 16
                }
                while i < d { dr[i] = (gr[i] * pw[i] - meanG - (xr[i] - mu) * r * meanGX) * r; i += 1 }
            }
            if let wp {
                var i = 0
                while i + 16 <= d {
                    store16(load16(wp + i) + load16(gr + i) * ((load16(xr + i) - mu) * r), wp + i)
                    i += 16
                }
                while i < d { wp[i] += gr[i] * ((xr[i] - mu) * r); i += 1 }
            }
            if let bp {
                var i = 0
                while i + 16 <= d { store16(load16(bp + i) + load16(gr + i), bp + i); i += 16 }
                while i < d { bp[i] += gr[i]; i += 1 }
            }
        }
    }
    if let dw, let weightPartials { sumChunks(weightPartials, chunks: chunks, width: d, into: dw.pointer(as: T.self)) }
    if let db, let biasPartials { sumChunks(biasPartials, chunks: chunks, width: d, into: db.pointer(as: T.self)) }
}
