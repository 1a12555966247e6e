/// Sums and means over axes.
///
/// Backward: the gradient is broadcast back over the reduced axes (divided by their size for means).

/// Sums a contiguous `[outer, reduced, inner]` block over its middle axis.
@inline(__always)
private func sumMiddleAxis<T: ComputeScalar>(_ input: UnsafePointer<T>, _ output: UnsafeMutablePointer<T>,
                                              outer: Int, reduced: Int, inner: Int) {
    Parallel.forEachRange(outer, grain: max(1, 32_768 / max(reduced * inner, 1))) { range in
        for o in range {
            let out = output + o * inner
            for i in 0..<inner { out[i] = 0 }
            let base = input + o * reduced * inner
            for r in 0..<reduced {
                let row = base + r * inner
                for i in 0..<inner { out[i] += row[i] }
            }
        }
    }
}

extension Tensor {
    /// The sum over `axes` (all axes when `nil`), keeping reduced axes as size 1 when `keepingDimensions`.
    public func sum(axes: [Int]? = nil, keepingDimensions: Bool = false) -> Tensor {
        requireComputeType("sum")
        let reduced = Set((axes ?? Array(0..<rank)).map { Shape.normalize(axis: $0, rank: rank) })
        var result = contiguousStorageView().detached()
        // One axis at a time, from the last: each pass is a contiguous [outer, reduced, inner] sum.
        for axis in reduced.sorted(by: >) {
            let outer = result.shape[..<axis].reduce(1, *)
            let inner = result.shape[(axis + 1)...].reduce(1, *)
            var keptShape = result.shape
            keptShape[axis] = 1
            let next = Tensor(zeros: keptShape, dtype: dtype)
            let source = result
            dispatchFloat(dtype, "sum",
                          float: { sumMiddleAxis(source.pointer(as: Float.self), next.pointer(as: Float.self),
                                                 outer: outer, reduced: source.shape[axis], inner: inner) },
                          double: { sumMiddleAxis(source.pointer(as: Double.self), next.pointer(as: Double.self),
                                                  outer: outer, reduced: source.shape[axis], inner: inner) })
            result = next
        }
        let keptShape = result.shape
        let finalShape = keepingDimensions ? keptShape : shape.enumerated().filter { !reduced.contains($0.offset) }.map(\.element)
        let out = Tensor(storage: result.storage, dtype: dtype, shape: finalShape)
        if Autograd.needsGraph(self) {
            let inputShape = shape
            out.recordOperation("sum", inputs: [self]) { g in
                [g.reshaped(keptShape).expanded(to: inputShape).contiguous()]
            }
        }
        return out
    }

    /// The mean over `axes` (all axes when `nil`).
    public func mean(axes: [Int]? = nil, keepingDimensions: Bool = false) -> Tensor {
        let reduced = Set((axes ?? Array(0..<rank)).map { Shape.normalize(axis: $0, rank: rank) })
        let count = reduced.reduce(1) { $0 * shape[$1] }
        return sum(axes: axes, keepingDimensions: keepingDimensions) * (1.0 / Double(max(count, 1)))
    }

    /// Sums this tensor down to `target`, a shape it was broadcast from (the gradient of broadcasting).
    public func sum(toShape target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        ensure(lead >= 0, "cannot sum shape \(shape) down to \(target)")
        var axes = Array(0..<lead)
        for (i, size) in target.enumerated() where size == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
        let summed = sum(axes: axes, keepingDimensions: true)
        return summed.reshaped(target)
    }
}
