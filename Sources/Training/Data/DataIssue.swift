/// Why a sample was skipped. Every skip is counted under one cause.
public enum SkipCause: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// An image file that does not exist or cannot be read.
    case missingImage = "missing_image"
    /// Image bytes that are not a PNG or JPEG, or are corrupt.
    case undecodableImage = "undecodable_image"
    /// A caption, question, answer or message with no text.
    case emptyText = "empty_text"
    /// More tokens than the maximum sequence length.
    case overLength = "over_length"
    /// More images than the maximum per sample.
    case tooManyImages = "too_many_images"
    /// A line or tar member that does not parse as a record of the format.
    case malformedRecord = "malformed_record"

    public var description: String { rawValue.replacingOccurrences(of: "_", with: " ") }
}

/// A bad sample: its cause, where it is, and what is wrong with it.
///
/// `description` reads `data/train.jsonl:17: field "text": empty text`.
public struct DataIssue: Error, Sendable, Equatable, CustomStringConvertible {
    public var cause: SkipCause
    public var location: RecordLocation
    /// The JSON field or tar member at fault, when there is one.
    public var field: String?
    /// What is wrong, in words.
    public var message: String

    public init(_ cause: SkipCause, at location: RecordLocation, field: String? = nil, _ message: String) {
        self.cause = cause
        self.location = location
        self.field = field
        self.message = message
    }

    public var description: String {
        "\(location): " + (field.map { "field \"\($0)\": " } ?? "") + message
    }
}

/// Samples skipped so far, per cause.
public struct SkipCounts: Sendable, Codable, Equatable, CustomStringConvertible {
    /// Skips by cause; causes never seen are absent.
    public private(set) var counts: [SkipCause: Int] = [:]

    public init() {}

    /// The number skipped for `cause`.
    public subscript(cause: SkipCause) -> Int { counts[cause, default: 0] }

    /// All skips.
    public var total: Int { counts.values.reduce(0, +) }

    /// Counts one more skip for `cause`.
    public mutating func add(_ cause: SkipCause) { counts[cause, default: 0] += 1 }

    /// `"2 missing image, 1 malformed record"`, causes in a fixed order; `"none"` without skips.
    public var description: String {
        let parts = SkipCause.allCases.compactMap { cause in counts[cause].map { "\($0) \(cause)" } }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    private enum CodingKeys: CodingKey { case counts }

    // As a JSON object keyed by cause name (a dictionary with enum keys would encode as an array).
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let raw = try container.decode([String: Int].self, forKey: .counts)
        for (name, count) in raw {
            guard let cause = SkipCause(rawValue: name) else {
                throw DecodingError.dataCorruptedError(forKey: .counts, in: container, debugDescription: "unknown skip cause \"\(name)\"")
            }
            counts[cause] = count
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) }), forKey: .counts)
    }
}

/// A dataset that cannot be used at all (as opposed to a bad sample, which is skipped): an unreadable
/// file, an unknown format, a record kind the stage cannot train on, or too many skipped samples.
public struct DataError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
