/// Token embedding lookup.

/// The rows of `table` picked by `ids`: `ids` of shape `[..]` (int64 or int32) and `table` of shape
/// `[V, D]` give `[.., D]`.
///
/// The table may be float32, float64, or a frozen bfloat16 / float16 table, upcast row by row to
/// float32 (so a 16-bit vocabulary matrix is never converted whole). An id outside `0..<V` traps
/// with a message naming the id and `V`.
///
/// Saves the ids. Backward (only when the table requires gradients): the output gradient's rows are
/// scatter-added into a `[V, D]` gradient, so repeated ids accumulate.
public func embedding(_ ids: Tensor, table: Tensor) -> Tensor {
    ensure(ids.dtype == .int64 || ids.dtype == .int32, "embedding ids must be int64 or int32, got \(ids.dtype)")
    ensure(table.rank == 2, "embedding table must have shape [V, D], got \(table.shape)")
    ensure(table.dtype.isFloatingPoint, "embedding table must be floating-point, got \(table.dtype)")
    let vocabulary = table.shape[0], width = table.shape[1]
    let indices = ids.integers()
    for (position, id) in indices.enumerated() where id < 0 || id >= vocabulary {
        fatalError("embedding: id \(id) at position \(position) is out of range for a table of V = \(vocabulary) rows")
    }
    let outputType: DType = table.dtype == .float64 ? .float64 : .float32
    let out = Tensor(zeros: ids.shape + [width], dtype: outputType)
    let source = table.contiguousStorageView()
    let rowBytes = width * table.dtype.byteSize
    let from = source.rawPointer, to = out.rawPointer
    Parallel.forEachRange(indices.count, grain: max(1, 65_536 / max(width, 1))) { positions in
        for position in positions {
            let id = indices[position]
            switch table.dtype {
            case .bfloat16, .float16:
                let bits = (from + id * rowBytes).assumingMemoryBound(to: UInt16.self)
                let row = to.assumingMemoryBound(to: Float.self) + position * width
                if table.dtype == .bfloat16 {
                    for j in 0..<width { row[j] = BFloat16.float(fromBits: bits[j]) }
                } else {
                    for j in 0..<width { row[j] = HalfFloat.float(fromBits: bits[j]) }
                }
            default:
                (to + position * rowBytes).copyMemory(from: from + id * rowBytes, byteCount: rowBytes)
            }
        }
    }
    guard Autograd.needsGraph(table) else { return out }
    let tableShape = table.shape, tableType = table.dtype
    out.recordOperation("embedding", inputs: [table]) { g in
        let g = g.contiguousStorageView()
        let dtable = Tensor(zeros: tableShape, dtype: tableType)
        let size = tableType.byteSize
        // Each worker owns a band of columns, so repeated ids never race.
        Parallel.forEachRange(width, grain: max(16, 65_536 / max(indices.count, 1))) { columns in
            for (position, id) in indices.enumerated() {
                if size == 4 {
                    let d = dtable.floatPointer + id * width, s = g.floatPointer + position * width
                    for j in columns { d[j] += s[j] }
                } else {
                    let d = dtable.doublePointer + id * width, s = g.doublePointer + position * width
                    for j in columns { d[j] += s[j] }
                }
            }
        }
        return [dtable]
    }
    return out
}
