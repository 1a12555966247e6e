import Foundation
import TensorCore
#if canImport(Glibc)
import Glibc
#endif

/// Writes a file so that readers see either the old contents or the complete new ones, never a
/// partial file, even if the process dies or the machine loses power midway.
///
/// Bytes go to a temporary file in the target's folder (`.name.tmp-XXXXXX`, so the final rename
/// stays on one file system); ``commit()`` flushes it with `fsync`, renames it over the target and
/// `fsync`s the folder so the rename itself is durable. If anything fails, or the writer is
/// dropped without committing, the temporary file is removed and the old target is untouched.
///
/// ```swift
/// try AtomicFile.write(jsonData, to: url)                  // one shot
/// try AtomicFile.write(to: url) { file in                   // streamed
///     for chunk in chunks { try file.write(chunk) }
/// }
/// ```
public final class AtomicFile {
    /// The file that ``commit()`` replaces.
    public let destination: URL
    /// The temporary file being written.
    public let temporaryPath: String
    /// Bytes written so far.
    public private(set) var byteCount = 0
    private var descriptor: Int32
    private var finished = false

    /// Creates the temporary file beside `destination`.
    ///
    /// - Throws: ``CheckpointError`` naming `destination` when the folder is not writable.
    public init(destination: URL) throws {
        self.destination = destination
        let folder = destination.deletingLastPathComponent().path
        var template = Array((folder + "/." + destination.lastPathComponent + ".tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw CheckpointError(file: destination.path, reason: "cannot create a temporary file in \(folder) (\(Self.lastError()))")
        }
        descriptor = fd
        temporaryPath = String(cString: template)
        // mkstemp creates 0600; give the result the usual permissions for a data file.
        fchmod(fd, 0o644)
    }

    deinit { if !finished { discard() } }

    private static func lastError() -> String { String(cString: strerror(errno)) }

    private func fail(_ what: String) -> CheckpointError {
        let error = CheckpointError(file: destination.path, reason: "\(what) (\(Self.lastError()))")
        discard()
        return error
    }

    /// Appends `bytes`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        ensure(!finished, "\(destination.path): write after commit or discard")
        var done = 0
        while done < bytes.count {
            // Linux writes at most about 2 GB per call; loop on short writes and interrupts.
            let n = Glibc.write(descriptor, bytes.baseAddress! + done, min(bytes.count - done, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("cannot write to temporary file \(temporaryPath)")
            }
            done += n
        }
        byteCount += bytes.count
    }

    /// Appends the bytes of `data`.
    public func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    /// Appends `text` as UTF-8.
    public func write(_ text: String) throws {
        var text = text
        try text.withUTF8 { try write(UnsafeRawBufferPointer($0)) }
    }

    /// Flushes the temporary file to disk and renames it over the destination, durably.
    public func commit() throws {
        ensure(!finished, "\(destination.path): commit after commit or discard")
        guard fsync(descriptor) == 0 else { throw fail("cannot fsync temporary file \(temporaryPath)") }
        guard close(descriptor) == 0 else { descriptor = -1; throw fail("cannot close temporary file \(temporaryPath)") }
        descriptor = -1
        guard rename(temporaryPath, destination.path) == 0 else { throw fail("cannot rename \(temporaryPath) over it") }
        finished = true
        let folder = open(destination.deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY)
        if folder >= 0 {
            // The data is already in place; a folder that cannot be synced (some network file
            // systems) only weakens durability, so this is not an error.
            _ = fsync(folder)
            close(folder)
        }
    }

    /// Abandons the write: closes and removes the temporary file; the destination is untouched.
    public func discard() {
        guard !finished else { return }
        finished = true
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
        unlink(temporaryPath)
    }

    /// Writes `destination` through `body`, committing when it returns and discarding when it throws.
    @discardableResult
    public static func write<Result>(to destination: URL, _ body: (AtomicFile) throws -> Result) throws -> Result {
        let file = try AtomicFile(destination: destination)
        do {
            let result = try body(file)
            try file.commit()
            return result
        } catch {
            file.discard()
            throw error
        }
    }

    /// Replaces `destination` with `data`, atomically.
    public static func write(_ data: Data, to destination: URL) throws {
        try write(to: destination) { try $0.write(data) }
    }
}
