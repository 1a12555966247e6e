/// Why an image could not be read or written, naming its source.
///
/// `description` reads as one sentence a user can act on, for example
/// `photo.png: bad CRC in chunk IDAT (the file is corrupt)`.
public struct MediaError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The kind of failure, for callers that branch on it.
    public enum Kind: Equatable, Sendable {
        /// The bytes are neither PNG nor JPEG.
        case notAnImage
        /// The data ends before the image does.
        case truncated
        /// A PNG chunk's CRC does not match its contents; carries the chunk type.
        case badChecksum(chunk: String)
        /// A width or height is zero or beyond what the format allows.
        case invalidDimensions
        /// More pixels than the decompression-bomb limit allows.
        case tooManyPixels
        /// Corrupt or unsupported data inside an otherwise recognised file.
        case corrupt
        /// The file could not be read or the pixels could not be encoded.
        case io
    }

    /// The file path, or a caller-chosen name for in-memory data.
    public let source: String
    /// The kind of failure.
    public let kind: Kind
    /// What is wrong, in words.
    public let detail: String

    public init(source: String, kind: Kind, detail: String) {
        self.source = source
        self.kind = kind
        self.detail = detail
    }

    public var description: String { "\(source): \(detail)" }
}
