/// Joining tensors along an axis and splitting one apart.

extension Tensor {
    /// The tensors joined along `axis`, into a new contiguous tensor. All must share the dtype and
    /// every size except along `axis`.
    ///
    /// Saves only the sizes along `axis`. Backward: each input receives its slice of the gradient.
    public static func concatenate(_ tensors: [Tensor], axis: Int) -> Tensor {
        ensure(!tensors.isEmpty, "concatenate needs at least one tensor")
        let first = tensors[0]
        ensure(first.rank >= 1, "concatenate needs tensors with at least one axis")
        let axis = Shape.normalize(axis: axis, rank: first.rank)
        for (index, tensor) in tensors.enumerated() {
            ensure(tensor.dtype == first.dtype,
                         "concatenate: tensor \(index) is \(tensor.dtype), tensor 0 is \(first.dtype)")
            let matches = tensor.rank == first.rank
                && (0..<first.rank).allSatisfy { $0 == axis || tensor.shape[$0] == first.shape[$0] }
            ensure(matches, "concatenate along axis \(axis): tensor \(index) has shape \(tensor.shape), "
                         + "tensor 0 has \(first.shape); all sizes but the concatenated one must agree")
        }
        let sizes = tensors.map { $0.shape[axis] }
        var shape = first.shape
        shape[axis] = sizes.reduce(0, +)
        let out = Tensor(uninitialized: shape, dtype: first.dtype)  // the pieces cover it
        var start = 0
        for (tensor, size) in zip(tensors, sizes) {
            if tensor.elementCount > 0 { copyElements(from: tensor, intoRegionOf: out, axis: axis, start: start) }
            start += size
        }
        guard Autograd.needsGraph(tensors) else { return out }
        let needs = tensors.map(\.requiresGrad)
        out.recordOperation("concatenate", inputs: tensors) { g in
            var start = 0
            return zip(sizes, needs).map { size, needed in
                defer { start += size }
                return needed ? g.detached().slice(axis: axis, start..<start + size).copy() : nil
            }
        }
        return out
    }

    /// Views of consecutive pieces along `axis` with the given sizes, which must add up to the size
    /// of that axis. Backward: as ``slice(axis:_:)`` for each piece (the gradients add up).
    public func split(sizes: [Int], axis: Int) -> [Tensor] {
        let axis = Shape.normalize(axis: axis, rank: rank)
        ensure(sizes.allSatisfy { $0 >= 0 } && sizes.reduce(0, +) == shape[axis],
                     "split sizes \(sizes) do not add up to the size \(shape[axis]) of axis \(axis) in \(shape)")
        var start = 0
        return sizes.map { size in
            defer { start += size }
            return slice(axis: axis, start..<start + size)
        }
    }
}
