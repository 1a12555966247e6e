import Checkpoint
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Makes a folder appear whole or not at all: the caller fills a temporary sibling
/// (`.NAME.tmp-PID`), then it is renamed into place (replacing an older folder of that name) and
/// the parent folder is synced. Temporaries that a killed writer left behind are removed by the
/// next writer to the same place.
enum DirectoryCommit {
    /// Builds `destination` through `fill`, which writes into the folder it is given.
    static func write(_ destination: URL, _ fill: (URL) throws -> Void) throws {
        let parent = destination.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        removeStaleTemporaries(of: destination)
        let temporary = parent.appendingPathComponent(".\(destination.lastPathComponent).tmp-\(getpid())")
        try? FileManager.default.removeItem(at: temporary)
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: false)
        do {
            try fill(temporary)
            syncFolder(temporary.path)
            if FileManager.default.fileExists(atPath: destination.path) {
                // rename(2) cannot replace a non-empty folder: move the old one aside first.
                let old = parent.appendingPathComponent(".\(destination.lastPathComponent).old-\(getpid())")
                try? FileManager.default.removeItem(at: old)
                try FileManager.default.moveItem(at: destination, to: old)
                try FileManager.default.moveItem(at: temporary, to: destination)
                try? FileManager.default.removeItem(at: old)
            } else {
                try FileManager.default.moveItem(at: temporary, to: destination)
            }
            syncFolder(parent.path)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
    }

    /// Removes `.NAME.tmp-*` and `.NAME.old-*` siblings of `destination` whose writer is gone.
    static func removeStaleTemporaries(of destination: URL) {
        let parent = destination.deletingLastPathComponent()
        let prefixes = [".\(destination.lastPathComponent).tmp-", ".\(destination.lastPathComponent).old-"]
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: parent.path) else { return }
        for entry in entries {
            guard let prefix = prefixes.first(where: entry.hasPrefix), let pid = Int32(entry.dropFirst(prefix.count)) else { continue }
            if pid == getpid() || kill(pid, 0) != 0 {
                try? FileManager.default.removeItem(at: parent.appendingPathComponent(entry))
            }
        }
    }

    static func syncFolder(_ path: String) {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY)
        guard descriptor >= 0 else { return }
        fsync(descriptor)
        close(descriptor)
    }
}
