/// Shape arithmetic shared by the kernels: strides, broadcasting, axis normalisation.
public enum Shape {
    /// The number of elements in a tensor of this shape (1 for a scalar).
    @inlinable
    public static func elementCount(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    /// Row-major strides, in elements.
    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[axis] = running
            running *= shape[axis]
        }
        return strides
    }

    /// Maps a possibly negative axis into `0..<rank`, trapping with a clear message when out of range.
    public static func normalize(axis: Int, rank: Int) -> Int {
        let normalized = axis < 0 ? axis + rank : axis
        ensure(normalized >= 0 && normalized < max(rank, 1),
                     "axis \(axis) is out of range for a tensor of rank \(rank)")
        return normalized
    }

    /// Errors from shape arithmetic.
    public struct Mismatch: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// The NumPy broadcast of two shapes: aligned from the right, each pair equal or one of them 1.
    public static func broadcast(_ a: [Int], _ b: [Int]) throws(Mismatch) -> [Int] {
        let rank = max(a.count, b.count)
        var result = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let x = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let y = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            guard x == y || x == 1 || y == 1 else {
                throw Mismatch("shapes \(a) and \(b) cannot be broadcast together (dimension \(i - rank): \(x) vs \(y))")
            }
            result[i] = x == 1 ? y : x
        }
        return result
    }
}
