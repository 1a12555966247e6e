import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A stage's `metrics.jsonl`: one JSON object per line, appended with a single `write(2)` per line
/// (a killed process leaves whole lines), and cut back to a run checkpoint's length on resume so
/// that the resumed run's lines follow the checkpoint's without repeats.
public final class MetricsLog {
    public let url: URL
    private let descriptor: Int32
    /// Bytes in the file.
    public private(set) var byteCount: Int

    /// Opens (creating) the log, keeping its first `keepingBytes` bytes (all when nil).
    public init(url: URL, keepingBytes: Int? = nil) throws {
        self.url = url
        let fd = open(url.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TrainingError("cannot open \(url.path) (\(String(cString: strerror(errno))))") }
        descriptor = fd
        var info = stat()
        fstat(fd, &info)
        byteCount = Int(info.st_size)
        if let keepingBytes, keepingBytes < byteCount {
            ftruncate(fd, off_t(keepingBytes))
            byteCount = keepingBytes
        }
    }

    deinit { close(descriptor) }

    /// Appends one record as a line.
    public func append(_ record: [String: MetricValue]) throws {
        var line = "{" + record.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value.json)" }.joined(separator: ", ") + "}\n"
        let written = line.withUTF8 { write(descriptor, $0.baseAddress, $0.count) }
        guard written == line.utf8.count else { throw TrainingError("cannot append to \(url.path) (\(String(cString: strerror(errno))))") }
        byteCount += written
    }

    /// Makes the appended lines durable (before a checkpoint records the length).
    public func sync() { fsync(descriptor) }
}

/// A number, text or flag in a metrics record.
public enum MetricValue: Sendable, Equatable, ExpressibleByFloatLiteral, ExpressibleByIntegerLiteral, ExpressibleByStringLiteral {
    case number(Double)
    case integer(Int)
    case text(String)
    case flag(Bool)

    public init(floatLiteral value: Double) { self = .number(value) }
    public init(integerLiteral value: Int) { self = .integer(value) }
    public init(stringLiteral value: String) { self = .text(value) }

    /// The value as JSON (non-finite numbers as null: JSON has no NaN).
    public var json: String {
        switch self {
        case .number(let value): return value.isFinite ? "\(value)" : "null"
        case .integer(let value): return "\(value)"
        case .flag(let value): return value ? "true" : "false"
        case .text(let value):
            let data = (try? JSONSerialization.data(withJSONObject: [value], options: [.fragmentsAllowed])) ?? Data("[\"\"]".utf8)
            return String(decoding: data, as: UTF8.self).dropFirst().dropLast().description
        }
    }

    /// The value as a number, when it is one.
    public var number: Double? {
        switch self {
        case .number(let value): return value
        case .integer(let value): return Double(value)
        default: return nil
        }
    }
}

/// A training run that cannot go on, with what happened and where.
public struct TrainingError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
