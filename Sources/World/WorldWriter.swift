import Foundation

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
                let url = temporary.appendingPathComponent(file.path)
                do { try file.contents.write(to: url) } catch {
                    throw WorldError("\(folder.appendingPathComponent(file.path).path): cannot write (\(error.localizedDescription))")
                }
            }
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
