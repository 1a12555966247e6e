import ArgumentParser
import Collectives
import Foundation
import Training
#if canImport(Glibc)
import Glibc
#endif

/// `vlm train` as one rank of an `mpirun` job: how it starts, reports failures and ends.
///
/// - Rank 0 prints progress and errors; the others stay quiet, except for a failure only they saw.
/// - A disagreement found by the start-up or replica checks (``DataParallelMismatch``) is known to
///   every rank at once: rank 0 prints it and every rank ends normally with status 1.
/// - Any other error on a rank is printed with the rank's number, and the job is aborted
///   (`MPI_Abort`), since the other ranks may be waiting in a collective for this one.
/// - When `mpirun` stops the job because a rank died (`kill -9`, out of memory), it sends the
///   survivors SIGTERM: the lowest surviving rank names the ranks on its host whose process is
///   gone. The run resumes from its last whole checkpoint with the same command.
enum TrainRanks {
    static func run(group: MPIProcessGroup, _ body: (DataParallelism) throws -> Void) throws {
        StopReport.install(group: group)
        let parallelism = DataParallelism(group: group, onReplicasVerified: replicaHashLog(rank: group.rank))
        do {
            try body(parallelism)
            InterruptCleanup.onSignal = nil
            group.finalize()
        } catch let mismatch as DataParallelMismatch {
            InterruptCleanup.onSignal = nil   // the others end too: they did not fail
            // Printed before any rank exits: mpirun stops the job at the first non-zero exit.
            if group.rank == 0 { FileHandle.standardError.write(Data("Error: \(mismatch)\n".utf8)) }
            try? group.barrier()
            group.finalize()
            throw ExitCode(1)
        } catch let exit as ExitCode where exit.rawValue == 0 {
            InterruptCleanup.onSignal = nil
            group.finalize()
        } catch {
            let message = VLM.message(for: error)
            FileHandle.standardError.write(Data("vlm train: rank \(group.rank) of \(group.size): error: \(message)\n".utf8))
            group.abort(status: 1)
        }
    }

    /// A test hook: with `VLM_REPLICA_HASH_LOG=FOLDER`, every rank appends `STAGE STEP HASH` to
    /// `FOLDER/rank-R.txt` each time the ranks' trainable weights were verified identical.
    static func replicaHashLog(rank: Int) -> (String, Int, String) -> Void {
        guard let folder = ProcessInfo.processInfo.environment["VLM_REPLICA_HASH_LOG"], !folder.isEmpty else { return { _, _, _ in } }
        let path = URL(fileURLWithPath: folder).appendingPathComponent("rank-\(rank).txt").path
        return { stage, step, hash in
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            guard fd >= 0 else { return }
            defer { close(fd) }
            var line = "\(stage) \(step) \(hash)\n"
            _ = line.withUTF8 { write(fd, $0.baseAddress, $0.count) }
        }
    }
}

/// What a rank says when `mpirun` stops the job with SIGTERM (or Ctrl-C reaches it): the lowest
/// rank still running names the ranks on its host whose process is gone, or says that the job was
/// stopped from outside. (Ranks on other hosts cannot be checked from here; `mpirun` names them.)
enum StopReport {
    static func install(group: MPIProcessGroup) {
        InterruptCleanup.onSignal = { _ in
            let stopped = group.stoppedPeers()
            let host = ProcessInfo.processInfo.hostName
            let lowestRunning = group.peers.indices.first { index in
                index == group.rank || group.peers[index].host != host || !stopped.contains { $0.hasPrefix("rank \(index) ") }
            }
            guard lowestRunning == group.rank else { return }
            let text = stopped.isEmpty
                ? "vlm train: rank \(group.rank) of \(group.size): stopped by mpirun (Ctrl-C, or a rank on another host failed: see mpirun's message)"
                : "vlm train: \(stopped.joined(separator: ", ")) stopped unexpectedly; the job stops"
            FileHandle.standardError.write(Data((text + ". Run the same command to resume from the last whole checkpoint.\n").utf8))
        }
    }
}
