import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Temporary files and folders made beside a destination, named `.NAME.tmp-PID-XXXXXX`, and the
/// clean-up of ones that a killed writer left behind.
///
/// While a writer lives it holds an exclusive `flock` on its temporary; a temporary is stale when
/// its PID is no longer a running process *and* nobody holds its lock (so a live writer in another
/// PID namespace sharing the folder is never robbed). ``removeStale(beside:)`` deletes stale ones;
/// ``AtomicFile`` and `vlm` call it before writing to the same place again.
public enum TemporarySibling {
    /// The name prefix of temporaries for `destination`: `.NAME.tmp-`.
    public static func prefix(for destination: URL) -> String { "." + destination.lastPathComponent + ".tmp-" }

    /// Creates an empty temporary file beside `destination`, locked, registered with
    /// ``PendingTemporaries``. Returns its open descriptor and path.
    static func makeFile(beside destination: URL) throws -> (descriptor: Int32, path: String) {
        let folder = destination.deletingLastPathComponent().path
        var template = Array((folder + "/" + prefix(for: destination) + "\(getpid())-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw CheckpointError(file: destination.path, reason: "cannot create a temporary file in \(folder) (\(lastError()))")
        }
        _ = flock(fd, LOCK_EX | LOCK_NB)
        let path = String(cString: template)
        PendingTemporaries.register(path)
        return (fd, path)
    }

    /// Creates an empty temporary folder beside `destination` (for a result that must appear whole,
    /// then be renamed into place), registered with ``PendingTemporaries`` and locked until
    /// ``releaseFolder(_:)``. Removes stale temporaries of `destination` first.
    public static func makeFolder(beside destination: URL) throws -> URL {
        removeStale(beside: destination)
        let folder = destination.deletingLastPathComponent().path
        var template = Array((folder + "/" + prefix(for: destination) + "\(getpid())-XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw CheckpointError(file: destination.path, reason: "cannot create a temporary folder in \(folder) (\(lastError()))")
        }
        let path = String(cString: template)
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = flock(fd, LOCK_EX | LOCK_NB) }
        folderLocks.withLock { $0[path] = fd }
        PendingTemporaries.register(path)
        return URL(fileURLWithPath: path)
    }

    /// Forgets a folder made by ``makeFolder(beside:)`` (after it was renamed into place or removed).
    public static func releaseFolder(_ folder: URL) {
        PendingTemporaries.unregister(folder.path)
        if let fd = folderLocks.withLock({ $0.removeValue(forKey: folder.path) }), fd >= 0 { close(fd) }
    }

    /// Removes the temporaries beside `destination` whose writer is gone (see the type's comment).
    public static func removeStale(beside destination: URL) {
        let folder = destination.deletingLastPathComponent().path
        let prefix = prefix(for: destination)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            guard let dash = rest.firstIndex(of: "-"), let pid = pid_t(rest[..<dash]), pid > 0, pid != getpid() else { continue }
            guard kill(pid, 0) != 0 && errno == ESRCH else { continue }
            let path = folder + "/" + name
            let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    private static let folderLocks = Locked<[String: Int32]>([:])

    static func lastError() -> String { String(cString: strerror(errno)) }
}

/// The temporary files and folders this process is writing, so that an interrupted command (Ctrl-C,
/// `kill`) can remove them before it exits: `vlm` calls ``removeAll()`` from its signal handler.
public enum PendingTemporaries {
    private static let paths = Locked<Set<String>>([])

    /// Records a temporary file or folder to remove if the process is interrupted.
    public static func register(_ path: String) { paths.withLock { _ = $0.insert(path) } }

    /// Forgets a temporary (it was renamed into place or removed).
    public static func unregister(_ path: String) { paths.withLock { _ = $0.remove(path) } }

    /// The temporaries registered now.
    public static var registered: Set<String> { paths.withLock { $0 } }

    /// Removes every registered temporary; returns how many there were.
    @discardableResult
    public static func removeAll() -> Int {
        let all = paths.withLock { current -> Set<String> in
            let copy = current
            current.removeAll()
            return copy
        }
        for path in all { try? FileManager.default.removeItem(atPath: path) }
        return all.count
    }
}

/// A value behind a lock.
final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
