import CMPI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The ranks of a job started by `mpirun` (Open MPI): the only code that calls MPI.
///
/// MPI is initialised only when a launcher started this process (``launchedByMPI(environment:)``):
/// a plain `vlm train` never touches MPI, because Open MPI's singleton start (a process that calls
/// `MPI_Init` without `mpirun`) forks a runtime daemon and costs about a second.
///
/// Errors are returned, not fatal, so that a failed collective becomes a ``CollectiveError`` that
/// can name a rank that stopped (see ``stoppedPeers()``).
public final class MPIProcessGroup: ProcessGroup {
    public let rank: Int
    public let size: Int
    /// Each rank's host name and process id, in rank order.
    public private(set) var peers: [(host: String, pid: Int32)]
    private let communicator: MPI_Comm
    private var finalized = false

    /// Whether the environment says an MPI launcher (`mpirun`, `srun`) started this process.
    public static func launchedByMPI(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"].contains { environment[$0] != nil }
    }

    /// The job's ranks when a launcher started this process, nil otherwise (MPI untouched).
    public static func joinIfLaunched() throws -> MPIProcessGroup? {
        launchedByMPI() ? try MPIProcessGroup() : nil
    }

    /// Initialises MPI (calls from any one thread at a time) and learns the ranks.
    public init() throws {
        var provided: Int32 = 0
        let status = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_SERIALIZED), &provided)
        guard status == MPI_SUCCESS else { throw CollectiveError("MPI_Init_thread failed: \(Self.message(for: status))") }
        communicator = vlmkit_mpi_comm_world()
        MPI_Comm_set_errhandler(communicator, vlmkit_mpi_errors_return())
        var rank: Int32 = 0, size: Int32 = 0
        MPI_Comm_rank(communicator, &rank)
        MPI_Comm_size(communicator, &size)
        self.rank = Int(rank)
        self.size = Int(size)
        peers = []
        let host = ProcessInfo.processInfo.hostName
        let all = try allGather("\(getpid()) \(host)")
        peers = all.map { entry in
            let parts = entry.split(separator: " ", maxSplits: 1)
            return (host: parts.count > 1 ? String(parts[1]) : "?", pid: Int32(parts.first ?? "") ?? 0)
        }
    }

    /// Ends MPI on this rank (at the end of the program; no collective may follow).
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        MPI_Finalize()
    }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        try allReduce(values.baseAddress, count: values.count, type: vlmkit_mpi_float(), operation: "sum of float32")
    }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
        try allReduce(values.baseAddress, count: values.count, type: vlmkit_mpi_double(), operation: "sum of float64")
    }

    private func allReduce<T>(_ base: UnsafeMutablePointer<T>?, count: Int, type: MPI_Datatype, operation: String) throws {
        guard let base, count > 0 else { return }
        var start = 0
        while start < count {   // MPI counts are 32-bit
            let n = min(count - start, Int(Int32.max))
            try check(MPI_Allreduce(vlmkit_mpi_in_place(), base + start, Int32(n), type, vlmkit_mpi_sum(), communicator),
                      "MPI_Allreduce (\(operation), \(count) elements)")
            start += n
        }
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var start = 0
        while start < bytes.count {
            let n = min(bytes.count - start, Int(Int32.max))
            try check(MPI_Bcast(base + start, Int32(n), vlmkit_mpi_byte(), Int32(root), communicator), "MPI_Bcast (\(bytes.count) bytes)")
            start += n
        }
    }

    public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var count = Int32(bytes.count)
        var counts = [Int32](repeating: 0, count: size)
        try check(MPI_Allgather(&count, 1, vlmkit_mpi_int(), &counts, 1, vlmkit_mpi_int(), communicator), "MPI_Allgather (sizes)")
        var offsets = [Int32](repeating: 0, count: size)
        for index in 1..<max(size, 1) { offsets[index] = offsets[index - 1] + counts[index - 1] }
        var gathered = [UInt8](repeating: 0, count: Int(counts.reduce(0, +)))
        var sent = bytes
        try check(MPI_Allgatherv(&sent, count, vlmkit_mpi_byte(), &gathered, &counts, &offsets, vlmkit_mpi_byte(), communicator),
                  "MPI_Allgatherv (\(bytes.count) bytes)")
        return (0..<size).map { Array(gathered[Int(offsets[$0]) ..< Int(offsets[$0] + counts[$0])]) }
    }

    public func barrier() throws { try check(MPI_Barrier(communicator), "MPI_Barrier") }

    public func abort(status: Int32) -> Never {
        MPI_Abort(communicator, status)
        exit(status)
    }

    /// The ranks on this host whose process no longer exists, described as `rank 1 (pid 4242 on host)`.
    /// Ranks on other hosts cannot be seen from here: `mpirun`'s own message names them.
    public func stoppedPeers() -> [String] {
        let host = ProcessInfo.processInfo.hostName
        return peers.enumerated().compactMap { index, peer in
            guard index != rank, peer.host == host, peer.pid > 0, kill(peer.pid, 0) != 0, errno == ESRCH else { return nil }
            return "rank \(index) (pid \(peer.pid) on \(peer.host))"
        }
    }

    private func check(_ status: Int32, _ operation: String) throws {
        guard status != MPI_SUCCESS else { return }
        let stopped = stoppedPeers()
        let cause = stopped.isEmpty ? "" : "; \(stopped.joined(separator: ", ")) stopped"
        throw CollectiveError("rank \(rank): \(operation) failed: \(Self.message(for: status))\(cause)")
    }

    static func message(for status: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        var length: Int32 = 0
        MPI_Error_string(status, &buffer, &length)
        return String(cString: buffer)
    }
}
