import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes a data set to a folder atomically: every file goes into a hidden temporary folder
/// beside the target, which is renamed into place only when all are written, so readers see
/// either no data set (or the old one) or the complete new one.
public enum WorldWriter {
    /// Writes `dataset` to `folder`.
    /// Missing parent folders are created.
    ///
    /// - Parameter replacingExisting: Allow replacing a folder that exists and is not empty (the
    ///   old folder is removed only after the new one is in place). An empty folder is always
    ///   replaced.
    /// - Throws: ``WorldError`` naming the folder when it exists and is not empty (without
    ///   `replacingExisting`), or a file cannot be written; nothing is left behind then.
    public static func write(_ dataset: WorldDataset, to folder: URL, replacingExisting: Bool) throws {
        let folder = folder.standardizedFileURL
        try checkDestination(folder, replacingExisting: replacingExisting)
        let manager = FileManager.default
        let parent = folder.deletingLastPathComponent()
        do { try manager.createDirectory(at: parent, withIntermediateDirectories: true) } catch {
            throw WorldError("\(parent.path): cannot create the folder (\(error.localizedDescription))")
        }
        let token = "\(ProcessInfo.processInfo.processIdentifier)-\(UInt64(Date().timeIntervalSince1970 * 1e6))"
        let temporary = parent.appendingPathComponent(".\(folder.lastPathComponent).tmp-\(token)")
        do {
            try manager.createDirectory(at: temporary.appendingPathComponent("images"), withIntermediateDirectories: true)
            for file in try dataset.files() {
                guard writeWithoutSync(file.contents, to: temporary.appendingPathComponent(file.path).path) else {
                    throw WorldError("\(folder.appendingPathComponent(file.path).path): cannot write (\(String(cString: strerror(errno))))")
                }
            }
            // One flush for the whole folder instead of one fsync per file (Foundation's Data.write
            // syncs each file, which made thousands of small images take ten times longer on a
            // busy disk), so the renamed folder is complete on disk too.
            sync()
            if manager.fileExists(atPath: folder.path) {
                let old = parent.appendingPathComponent(".\(folder.lastPathComponent).old-\(token)")
                try manager.moveItem(at: folder, to: old)
                do { try manager.moveItem(at: temporary, to: folder) } catch {
                    try? manager.moveItem(at: old, to: folder)
                    throw error
                }
                try? manager.removeItem(at: old)
            } else {
                try manager.moveItem(at: temporary, to: folder)
            }
        } catch {
            try? manager.removeItem(at: temporary)
            if let error = error as? WorldError { throw error }
            throw WorldError("\(folder.path): cannot write the data set (\(error.localizedDescription))")
        }
    }

    /// Creates or truncates `path` and writes `data`, without flushing it to disk.
    private static func writeWithoutSync(_ data: Data, to path: String) -> Bool {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        return data.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let n = Glibc.write(descriptor, buffer.baseAddress! + done, buffer.count - done)
                if n < 0 { if errno == EINTR { continue }; return false }
                done += n
            }
            return true
        }
    }

    /// Throws unless `folder` is absent, empty, or may be replaced.
    public static func checkDestination(_ folder: URL, replacingExisting: Bool) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory) else { return }
        guard isDirectory.boolValue else { throw WorldError("\(folder.path) exists and is not a folder") }
        let contents = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        if !contents.isEmpty && !replacingExisting {
            throw WorldError("\(folder.path) exists and is not empty; pass --force to replace it")
        }
    }
}
