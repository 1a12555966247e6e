import Collectives
import TensorCore

/// Sums contiguous float32 or float64 tensors over a ``ProcessGroup`` in messages of at most
/// `bucketBytes`: small tensors are packed together into one bucket (one message instead of many),
/// a large one is summed in place, in bucket-sized pieces.
struct GradientBuckets {
    var bucketBytes: Int

    func allReduceSum(_ tensors: [Tensor], group: any ProcessGroup) throws {
        try reduce(tensors.filter { $0.dtype == .float32 }, as: Float.self, sum: group.allReduceSum)
        try reduce(tensors.filter { $0.dtype == .float64 }, as: Double.self, sum: group.allReduceSum)
        if let other = tensors.first(where: { $0.dtype != .float32 && $0.dtype != .float64 }) {
            throw CollectiveError("cannot sum a \(other.dtype) gradient of shape \(other.shape) over ranks")
        }
    }

    private func reduce<T: ComputeScalar>(_ tensors: [Tensor], as _: T.Type,
                                          sum: (UnsafeMutableBufferPointer<T>) throws -> Void) throws {
        let capacity = max(1, bucketBytes / MemoryLayout<T>.stride)
        var bucket = [T](repeating: 0, count: capacity)
        var pending: [(pointer: UnsafeMutablePointer<T>, count: Int)] = [], filled = 0

        func flush() throws {
            guard filled > 0 else { return }
            try bucket.withUnsafeMutableBufferPointer { buffer in
                var offset = 0
                for (pointer, count) in pending { (buffer.baseAddress! + offset).update(from: pointer, count: count); offset += count }
                try sum(UnsafeMutableBufferPointer(rebasing: buffer[0..<filled]))
                offset = 0
                for (pointer, count) in pending { pointer.update(from: buffer.baseAddress! + offset, count: count); offset += count }
            }
            pending.removeAll(keepingCapacity: true)
            filled = 0
        }

        for tensor in tensors {
            let pointer = tensor.pointer(as: T.self), count = tensor.elementCount
            if count >= capacity / 2 {
                var start = 0
                while start < count {
                    let n = min(capacity, count - start)
                    try sum(UnsafeMutableBufferPointer(start: pointer + start, count: n))
                    start += n
                }
            } else {
                if filled + count > capacity { try flush() }
                pending.append((pointer, count))
                filled += count
            }
        }
        try flush()
    }
}
