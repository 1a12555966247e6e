import Checkpoint
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Makes a folder appear whole or not at all: the caller fills a temporary sibling
/// (`.NAME.tmp-PID-XXXXXX`), then it is renamed into place (replacing an older folder of that name) and
/// the parent folder is synced. Temporaries that a killed writer left behind are removed by the
/// next writer to the same place.
enum DirectoryCommit {
    /// Builds `destination` through `fill`, which writes into the folder it is given (a locked
    /// ``TemporarySibling`` folder, so Ctrl-C clean-up and stale-temporary removal apply).
    static func write(_ destination: URL, _ fill: (URL) throws -> Void) throws {
        let parent = destination.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        removeStaleTemporaries(of: destination)
        let temporary = try TemporarySibling.makeFolder(beside: destination)
        defer { TemporarySibling.releaseFolder(temporary) }
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
        removeStaleTemporaries(in: destination.deletingLastPathComponent()) { $0 == destination.lastPathComponent }
    }

    /// Removes every `.NAME.tmp-PID` and `.NAME.old-PID` entry of `folder` (for names accepted by
    /// `names`) whose process is gone: what a killed writer left behind.
    static func removeStaleTemporaries(in folder: URL, names: (String) -> Bool = { _ in true }) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return }
        for entry in entries where entry.hasPrefix(".") {
            for marker in [".tmp-", ".old-"] {
                // `.NAME.tmp-PID` (folders) or `.NAME.tmp-PID-XXXXXX` (AtomicFile's files).
                guard let range = entry.range(of: marker, options: .backwards),
                      let pid = Int32(entry[range.upperBound...].prefix { $0.isNumber }),
                      names(String(entry[entry.index(after: entry.startIndex)..<range.lowerBound])) else { continue }
                if pid == getpid() || kill(pid, 0) != 0 {
                    try? FileManager.default.removeItem(at: folder.appendingPathComponent(entry))
                }
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
