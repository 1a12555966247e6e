import Foundation
import TensorCore
#if canImport(Glibc)
import Glibc
#endif

/// Writes a file so that readers see either the old contents or the complete new ones, never a
/// partial file, even if the process dies or the machine loses power midway.
///
/// Bytes go to a temporary file beside the target (`.NAME.tmp-PID-XXXXXX`, so the final rename
/// stays on one file system); ``commit()`` flushes it with `fsync`, renames it over the target and
/// `fsync`s the folder so the rename itself is durable. If anything fails, or the writer is
/// dropped without committing, the temporary file is removed and the old target is untouched.
/// Temporaries that a killed writer left beside the target are removed by the next write there
/// (see ``TemporarySibling``).
///
/// Where the bytes go:
/// - A symbolic link is followed (through any chain of links): the file it points to is replaced,
///   the link stays a link. A dangling link creates its target.
/// - A descriptor of this process — `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N` —
///   and an existing device, FIFO or socket are written directly, in order, with nothing to rename
///   (``isDirect``); a failure midway cannot be undone there.
/// - A folder is an error.
///
/// ```swift
/// try AtomicFile.write(jsonData, to: url)                  // one shot
/// try AtomicFile.write(to: url) { file in                   // streamed
///     for chunk in chunks { try file.write(chunk) }
/// }
/// ```
public final class AtomicFile {
    /// The destination as given.
    public let destination: URL
    /// The path that ``commit()`` replaces, after following links (equal to `destination` unless it
    /// is a link).
    public let target: String
    /// The temporary file being written (nil when writing directly).
    public let temporaryPath: String?
    /// Bytes written so far.
    public private(set) var byteCount = 0
    /// True when the bytes go straight to a descriptor, device or pipe rather than through a
    /// temporary file.
    public var isDirect: Bool { temporaryPath == nil }
    private var descriptor: Int32
    private var finished = false

    /// Opens the destination for writing: a temporary file beside the (link-resolved) target, or
    /// the descriptor, device or pipe itself.
    ///
    /// - Throws: ``CheckpointError`` naming `destination` when it is a folder, its folder does not
    ///   exist or is not writable, or a device cannot be opened.
    public init(destination: URL) throws {
        self.destination = destination
        switch try Self.resolve(destination.path) {
        case .descriptor(let fd):
            let copy = dup(fd)
            guard copy >= 0 else {
                throw CheckpointError(file: destination.path, reason: "cannot use descriptor \(fd) (\(TemporarySibling.lastError()))")
            }
            descriptor = copy
            target = destination.path
            temporaryPath = nil
        case .special(let path):
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw CheckpointError(file: destination.path, reason: "cannot open \(path) for writing (\(TemporarySibling.lastError()))")
            }
            descriptor = fd
            target = path
            temporaryPath = nil
        case .file(let path):
            let targetURL = URL(fileURLWithPath: path)
            TemporarySibling.removeStale(beside: targetURL)
            do {
                let (fd, temporary) = try TemporarySibling.makeFile(beside: targetURL)
                descriptor = fd
                temporaryPath = temporary
            } catch let error as CheckpointError {
                throw CheckpointError(file: destination.path, reason: error.reason)
            }
            target = path
            // mkstemp creates 0600: a replaced file keeps its mode, a new one gets what the umask
            // leaves of 0666, as `open` would have given it.
            fchmod(descriptor, Self.permissions(replacing: path))
        }
    }

    /// The mode a file written to `path` gets: the existing file's, or 0666 less the umask.
    static func permissions(replacing path: String) -> mode_t {
        var existing = stat()
        if stat(path, &existing) == 0 { return existing.st_mode & 0o7777 }
        return 0o666 & ~currentUmask()
    }

    /// The process's umask, read without changing it (`umask(2)` can only set it, and setting it
    /// twice would race with other threads creating files); 0o022 where /proc does not say.
    static func currentUmask() -> mode_t {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Umask:") }),
              let value = mode_t(line.dropFirst("Umask:".count).trimmingCharacters(in: .whitespaces), radix: 8) else { return 0o022 }
        return value
    }

    /// Where a destination path leads.
    enum Resolved: Equatable {
        /// An open descriptor of this process.
        case descriptor(Int32)
        /// An existing device, FIFO or socket.
        case special(String)
        /// A regular file (existing or not) to replace atomically.
        case file(String)
    }

    /// Follows `path` through links to what should be written.
    static func resolve(_ path: String) throws -> Resolved {
        var current = path
        for _ in 0..<40 {
            if let fd = descriptorNumber(current) { return .descriptor(fd) }
            var info = stat()
            guard lstat(current, &info) == 0 else { return .file(current) }   // does not exist yet
            switch info.st_mode & S_IFMT {
            case S_IFLNK:
                guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: current) else {
                    throw CheckpointError(file: path, reason: "cannot read the symbolic link \(current)")
                }
                current = link.hasPrefix("/") ? link
                    : ((current as NSString).deletingLastPathComponent as NSString).appendingPathComponent(link)
            case S_IFREG: return .file(current)
            case S_IFDIR: throw CheckpointError(file: path, reason: "is a folder, not a file")
            default: return .special(current)
            }
        }
        throw CheckpointError(file: path, reason: "too many levels of symbolic links")
    }

    /// The descriptor a path such as `/dev/stdout` or `/proc/self/fd/3` names, if it names one.
    private static func descriptorNumber(_ path: String) -> Int32? {
        switch path {
        case "/dev/stdout": return 1
        case "/dev/stderr": return 2
        default:
            for prefix in ["/dev/fd/", "/proc/self/fd/", "/proc/\(getpid())/fd/"] where path.hasPrefix(prefix) {
                return Int32(path.dropFirst(prefix.count))
            }
            return nil
        }
    }

    deinit { if !finished { discard() } }

    private func fail(_ what: String) -> CheckpointError {
        let error = CheckpointError(file: destination.path, reason: "\(what) (\(TemporarySibling.lastError()))")
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
                throw fail("cannot write to \(temporaryPath ?? target)")
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

    /// Flushes the temporary file to disk and renames it over the target, durably (for a direct
    /// write: closes the descriptor).
    public func commit() throws {
        ensure(!finished, "\(destination.path): commit after commit or discard")
        guard let temporaryPath else {
            finished = true
            let fd = descriptor
            descriptor = -1
            guard close(fd) == 0 else {
                throw CheckpointError(file: destination.path, reason: "cannot finish writing (\(TemporarySibling.lastError()))")
            }
            return
        }
        guard fsync(descriptor) == 0 else { throw fail("cannot fsync temporary file \(temporaryPath)") }
        guard close(descriptor) == 0 else { descriptor = -1; throw fail("cannot close temporary file \(temporaryPath)") }
        descriptor = -1
        guard rename(temporaryPath, target) == 0 else { throw fail("cannot rename \(temporaryPath) over \(target)") }
        finished = true
        PendingTemporaries.unregister(temporaryPath)
        let folder = open((target as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY)
        if folder >= 0 {
            // The data is already in place; a folder that cannot be synced (some network file
            // systems) only weakens durability, so this is not an error.
            _ = fsync(folder)
            close(folder)
        }
    }

    /// Abandons the write: closes and removes the temporary file; the target is untouched (a
    /// direct write keeps what it wrote).
    public func discard() {
        guard !finished else { return }
        finished = true
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
        if let temporaryPath {
            unlink(temporaryPath)
            PendingTemporaries.unregister(temporaryPath)
        }
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
