/// The SwiGLU gate of the Llama MLP: `down(silu(gate(x)) · up(x))`, fused between the projections.

/// `silu(gate) · up` element-wise, with `silu(a) = a·σ(a)` and `σ(a) = 1/(1 + e⁻ᵃ)`.
/// `gate` and `up` must have the same shape and dtype.
///
/// Saves `gate` and `up`. Backward, with `s = σ(gate)`:
/// `dgate = g·up·s·(1 + gate·(1 − s))`, `dup = g·gate·s`.
public func swiglu(gate: Tensor, up: Tensor) -> Tensor {
    gate.requireComputeType("swiglu")
    ensure(gate.shape == up.shape && gate.dtype == up.dtype,
                 "swiglu: gate \(gate.dtype) \(gate.shape) and up \(up.dtype) \(up.shape) must match")
    let a = gate.contiguousStorageView(), b = up.contiguousStorageView()
    let out = Tensor(uninitialized: gate.shape, dtype: gate.dtype)  // written in full
    dispatchFloat(gate.dtype, "swiglu",
                  float: { swigluForward(a, b, out, Float.self) },
                  double: { swigluForward(a, b, out, Double.self) })
    guard Autograd.needsGraph(gate, up) else { return out }
    let savedGate = a.detached(), savedUp = b.detached()
    let gateNeeds = gate.requiresGrad, upNeeds = up.requiresGrad
    out.recordOperation("swiglu", inputs: [gate, up]) { g in
        let g = g.contiguousStorageView()
        let dgate = gateNeeds ? Tensor(uninitialized: g.shape, dtype: g.dtype) : nil
        let dup = upNeeds ? Tensor(uninitialized: g.shape, dtype: g.dtype) : nil
        dispatchFloat(g.dtype, "swiglu backward",
                      float: { swigluBackward(savedGate, savedUp, g, dgate, dup, Float.self) },
                      double: { swigluBackward(savedGate, savedUp, g, dgate, dup, Double.self) })
        return [dgate, dup]
    }
    return out
}

@inline(__always)
private func swigluForward<T: RowScalar>(_ gate: Tensor, _ up: Tensor, _ out: Tensor, _: T.Type) {
    let pa = gate.pointer(as: T.self), pb = up.pointer(as: T.self), po = out.pointer(as: T.self)
    let n = out.elementCount
    Parallel.forEachRange(n / 16, grain: 1024) { blocks in
        for block in blocks {
            let i = block * 16
            let a = load16(pa + i)
            store16(a / (1 + exp16(-a)) * load16(pb + i), po + i)
        }
    }
    for i in (n / 16 * 16)..<n { po[i] = pa[i] / (1 + T.exp(-pa[i])) * pb[i] }
}

@inline(__always)
private func swigluBackward<T: RowScalar>(_ gate: Tensor, _ up: Tensor, _ gradient: Tensor,
                                          _ dgate: Tensor?, _ dup: Tensor?, _: T.Type) {
    let pa = gate.pointer(as: T.self), pb = up.pointer(as: T.self), pg = gradient.pointer(as: T.self)
    let pda = dgate?.pointer(as: T.self), pdb = dup?.pointer(as: T.self)
    let n = gradient.elementCount
    Parallel.forEachRange(n / 16, grain: 1024) { blocks in
        for block in blocks {
            let i = block * 16
            let a = load16(pa + i), g = load16(pg + i)
            let s = 1 / (1 + exp16(-a))
            if let pda { store16(g * load16(pb + i) * s * (1 + a * (1 - s)), pda + i) }
            if let pdb { store16(g * a * s, pdb + i) }
        }
    }
    for i in (n / 16 * 16)..<n {
        let a = pa[i], s = 1 / (1 + T.exp(-a))
        pda?[i] = pg[i] * pb[i] * s * (1 + a * (1 - s))
        pdb?[i] = pg[i] * a * s
    }
}
