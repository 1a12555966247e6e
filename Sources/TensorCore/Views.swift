/// Operations that change how elements are addressed without (usually) moving them: reshape,
/// expand, permute, transpose, slice.

extension Tensor {
    /// The same elements with a new shape; one dimension may be `-1` (inferred). A view when this
    /// tensor is contiguous, a copy otherwise. Backward: reshape the gradient back.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.reduce(1) { $0 * $1.element }
            ensure(known > 0 && elementCount % known == 0,
                         "cannot reshape \(shape) (\(elementCount) elements) to \(newShape)")
            resolved[inferred] = elementCount / known
        }
        ensure(Shape.elementCount(resolved) == elementCount,
                     "cannot reshape \(shape) (\(elementCount) elements) to \(newShape)")
        if resolved == shape { return self }
        let source = contiguousStorageView()
        let out = Tensor(storage: source.storage, dtype: dtype, shape: resolved, offset: source.offset)
        if Autograd.needsGraph(self) {
            let inputShape = shape
            out.recordOperation("reshape", inputs: [self]) { g in [g.reshaped(inputShape)] }
        }
        return out
    }

    /// A view repeating size-1 axes (stride 0) up to `target`. Backward: sum over the expanded axes.
    public func expanded(to target: [Int]) -> Tensor {
        if target == shape { return self }
        let out = Tensor(storage: storage, dtype: dtype, shape: target, strides: broadcastStrides(to: target), offset: offset)
        if Autograd.needsGraph(self) {
            let inputShape = shape
            out.recordOperation("expand", inputs: [self]) { g in [g.sum(toShape: inputShape)] }
        }
        return out
    }

    /// A view with axes reordered: result axis `i` is this tensor's axis `order[i]`.
    /// Backward: permute the gradient by the inverse order.
    public func permuted(_ order: [Int]) -> Tensor {
        let order = order.map { Shape.normalize(axis: $0, rank: rank) }
        ensure(order.count == rank && Set(order).count == rank,
                     "permutation \(order) is not a reordering of the \(rank) axes of \(shape)")
        let out = Tensor(storage: storage, dtype: dtype, shape: order.map { shape[$0] },
                         strides: order.map { strides[$0] }, offset: offset)
        if Autograd.needsGraph(self) {
            var inverse = [Int](repeating: 0, count: order.count)
            for (i, axis) in order.enumerated() { inverse[axis] = i }
            out.recordOperation("permute", inputs: [self]) { g in [g.permuted(inverse)] }
        }
        return out
    }

    /// A view with two axes swapped (the last two by default).
    public func transposed(_ first: Int = -2, _ second: Int = -1) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(Shape.normalize(axis: first, rank: rank), Shape.normalize(axis: second, rank: rank))
        return permuted(order)
    }

    /// A view of `range` along `axis`. Backward: the gradient placed into zeros of the input's shape.
    public func slice(axis: Int, _ range: Range<Int>) -> Tensor {
        let axis = Shape.normalize(axis: axis, rank: rank)
        ensure(range.lowerBound >= 0 && range.upperBound <= shape[axis],
                     "slice \(range) is out of bounds for axis \(axis) of size \(shape[axis]) in \(shape)")
        var newShape = shape
        newShape[axis] = range.count
        let out = Tensor(storage: storage, dtype: dtype, shape: newShape, strides: strides,
                         offset: offset + range.lowerBound * strides[axis])
        if Autograd.needsGraph(self) {
            let inputShape = shape, inputDType = dtype
            out.recordOperation("slice", inputs: [self]) { g in
                let full = Tensor(zeros: inputShape, dtype: inputDType)
                copyElements(from: g, intoRegionOf: full, axis: axis, start: range.lowerBound)
                return [full]
            }
        }
        return out
    }

    /// Removes size-1 axes (`axis` only, when given).
    public func squeezed(axis: Int? = nil) -> Tensor {
        if let axis {
            let a = Shape.normalize(axis: axis, rank: rank)
            ensure(shape[a] == 1, "cannot squeeze axis \(axis) of size \(shape[a]) in \(shape)")
            var s = shape
            s.remove(at: a)
            return reshaped(s)
        }
        return reshaped(shape.filter { $0 != 1 })
    }

    /// Inserts a size-1 axis at `axis`.
    public func unsqueezed(axis: Int) -> Tensor {
        let a = axis < 0 ? axis + rank + 1 : axis
        ensure(a >= 0 && a <= rank, "cannot insert axis \(axis) into rank \(rank)")
        var s = shape
        s.insert(1, at: a)
        return reshaped(s)
    }
}

/// Copies `source` into the region of contiguous `destination` that starts at `start` along `axis`
/// (all other axes equal). Used by slice's backward and by concatenation.
func copyElements(from source: Tensor, intoRegionOf destination: Tensor, axis: Int, start: Int) {
    ensure(destination.isContiguous && source.dtype == destination.dtype, "copyElements: \(source.dtype) into a strided or \(destination.dtype) region")
    let region = Tensor(storage: destination.storage, dtype: destination.dtype, shape: source.shape,
                        strides: destination.strides, offset: destination.offset + start * destination.strides[axis])
    let contiguousSource = source.contiguousStorageView()
    // Copy row by row into the strided region.
    let size = source.dtype.byteSize
    let loop = StridedRows(shape: source.shape, operandStrides: [region.strides])
    let rowLength = loop.rowLength
    let from = contiguousSource.rawPointer, to = region.rawPointer
    loop.forEachRow(in: 0..<loop.rowCount) { row, offsets in
        (to + offsets[0] * size).copyMemory(from: from + row * rowLength * size, byteCount: rowLength * size)
    }
}

extension Tensor {
    /// Copies `source`'s elements into this view, in place (same shape and dtype). Not recorded by
    /// autograd: for caches and buffers.
    public func assign(_ source: Tensor) {
        ensure(source.shape == shape && source.dtype == dtype,
               "assign: \(source.dtype) \(source.shape) into \(dtype) \(shape)")
        guard rank > 0 else {
            let element = source.contiguousStorageView()
            withExtendedLifetime(element) { rawPointer.copyMemory(from: element.rawPointer, byteCount: dtype.byteSize) }
            return
        }
        let size = dtype.byteSize
        let contiguousSource = source.contiguousStorageView()
        let loop = StridedRows(shape: shape, operandStrides: [strides])
        let rowLength = loop.rowLength
        let innerStride = strides.last ?? 1
        let from = contiguousSource.rawPointer, to = rawPointer
        loop.forEachRow(in: 0..<loop.rowCount) { row, offsets in
            let destination = to + offsets[0] * size, origin = from + row * rowLength * size
            if innerStride == 1 {
                destination.copyMemory(from: origin, byteCount: rowLength * size)
            } else {
                for i in 0..<rowLength {
                    (destination + i * innerStride * size).copyMemory(from: origin + i * size, byteCount: size)
                }
            }
        }
    }
}
