/// Iteration over the elements of strided (possibly broadcast) views, innermost axis last.
///
/// The kernels for copies and broadcasting binary ops use it: for every row of the output (all
/// axes but the last) it hands the body the element offsets of each operand at that row's start,
/// and the body runs a tight loop over the last axis.
@usableFromInline
struct StridedRows {
    @usableFromInline let shape: [Int]
    /// Per operand, per axis: the stride in elements (0 along broadcast axes).
    @usableFromInline let operandStrides: [[Int]]

    @usableFromInline
    init(shape: [Int], operandStrides: [[Int]]) {
        self.shape = shape
        self.operandStrides = operandStrides
    }

    /// The length of the innermost axis (1 for a scalar).
    @usableFromInline var rowLength: Int { shape.last ?? 1 }
    /// The number of rows.
    @usableFromInline var rowCount: Int { shape.isEmpty ? 1 : Shape.elementCount(shape) / max(rowLength, 1) }

    /// Calls `body(row, offsets)` for rows in `range`, `offsets[i]` being operand `i`'s element
    /// offset at the row's first element.
    @inlinable
    func forEachRow(in range: Range<Int>, _ body: (Int, UnsafeBufferPointer<Int>) -> Void) {
        let outerRank = max(shape.count - 1, 0)
        let operands = operandStrides.count
        var index = [Int](repeating: 0, count: outerRank)
        var offsets = [Int](repeating: 0, count: operands)
        // Position the counter at range.lowerBound.
        var remainder = range.lowerBound
        for axis in stride(from: outerRank - 1, through: 0, by: -1) {
            index[axis] = remainder % shape[axis]
            remainder /= shape[axis]
        }
        for op in 0..<operands {
            var offset = 0
            for axis in 0..<outerRank { offset += index[axis] * operandStrides[op][axis] }
            offsets[op] = offset
        }
        for row in range {
            offsets.withUnsafeBufferPointer { body(row, $0) }
            // Increment the multi-index like an odometer, updating offsets incrementally.
            var axis = outerRank - 1
            while axis >= 0 {
                index[axis] += 1
                for op in 0..<operands { offsets[op] += operandStrides[op][axis] }
                if index[axis] < shape[axis] { break }
                for op in 0..<operands { offsets[op] -= operandStrides[op][axis] * shape[axis] }
                index[axis] = 0
                axis -= 1
            }
        }
    }
}

extension Tensor {
    /// This tensor's strides aligned to a broadcast `shape` (0 along broadcast or missing axes).
    @usableFromInline
    func broadcastStrides(to target: [Int]) -> [Int] {
        let lead = target.count - rank
        ensure(lead >= 0, "cannot broadcast shape \(shape) to \(target)")
        return (0..<target.count).map { axis in
            guard axis >= lead else { return 0 }
            let size = shape[axis - lead]
            ensure(size == target[axis] || size == 1, "cannot broadcast shape \(shape) to \(target)")
            return size == 1 ? 0 : strides[axis - lead]
        }
    }
}
