/// The processes of a data-parallel job and the collective operations between them.
///
/// Every process (rank) must call the same collective operations in the same order with buffers
/// of the same size; a collective returns on a rank once every rank has called it. The results of
/// a sum are the same on every rank, bit for bit (each element is added in one place and sent).
public protocol ProcessGroup: AnyObject {
    /// This process's index, 0 ..< ``size``.
    var rank: Int { get }
    /// The number of processes.
    var size: Int { get }

    /// Replaces `values` on every rank by their element-wise sum over all ranks.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws
    /// Replaces `values` on every rank by their element-wise sum over all ranks.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws
    /// Replaces `bytes` on every rank by `root`'s (every rank passes a buffer of the root's size).
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) throws
    /// Every rank's `bytes` (small buffers of any sizes), in rank order, on every rank.
    func allGather(_ bytes: [UInt8]) throws -> [[UInt8]]
    /// Returns once every rank has called it.
    func barrier() throws
    /// Ends every process of the job at once with `status` (for a failure only some ranks saw).
    func abort(status: Int32) -> Never
}

extension ProcessGroup {
    /// The element-wise sum of `values` over all ranks.
    public func sum(_ values: [Double]) throws -> [Double] {
        var result = values
        try result.withUnsafeMutableBufferPointer { try allReduceSum($0) }
        return result
    }

    /// Whether `flag` is true on any rank.
    public func any(_ flag: Bool) throws -> Bool { try sum([flag ? 1 : 0])[0] > 0 }

    /// Every rank's string, in rank order, on every rank.
    public func allGather(_ text: String) throws -> [String] {
        try allGather(Array(text.utf8)).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// A collective operation failed: a rank stopped or the network failed.
public struct CollectiveError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
