import Foundation

/// The most pixels a decoder accepts by default: 178,956,970, twice Pillow's
/// `Image.MAX_IMAGE_PIXELS`, the point at which Pillow raises `DecompressionBombError`.
public let defaultPixelLimit = 178_956_970

/// Decodes a PNG or JPEG held in memory, choosing the format from its first bytes.
///
/// Returns RGB, or RGBA for a PNG with an alpha channel or a tRNS chunk; JPEGs are turned upright
/// by their EXIF orientation. Pixels match Pillow 13 (see `PNGDecoder` and `JPEGDecoder` for the
/// exact rules).
///
/// ```swift
/// let image = try decodeImage(data: bytes, source: "upload #3")
/// ```
///
/// - Parameters:
///   - data: the file's bytes.
///   - source: a name for the data in error messages, usually its path.
///   - pixelLimit: the most pixels to accept, a guard against decompression bombs.
/// - Throws: ``MediaError`` naming `source` when the data is not PNG or JPEG, is truncated or
///   corrupt (including a bad PNG chunk CRC), has zero or too-large dimensions, or has more than
///   `pixelLimit` pixels.
public func decodeImage(data: Data, source: String, pixelLimit: Int = defaultPixelLimit) throws -> Image {
    try data.withUnsafeBytes { try decodeImage(bytes: $0, source: source, pixelLimit: pixelLimit) }
}

/// Decodes a PNG or JPEG from raw bytes; see ``decodeImage(data:source:pixelLimit:)``.
public func decodeImage(bytes: UnsafeRawBufferPointer, source: String,
                        pixelLimit: Int = defaultPixelLimit) throws -> Image {
    switch ImageFormat(sniffing: bytes) {
    case .png: return try PNGDecoder.decode(bytes, source: source, pixelLimit: pixelLimit)
    case .jpeg: return try JPEGDecoder.decode(bytes, source: source, pixelLimit: pixelLimit)
    case nil:
        let head = bytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
        throw MediaError(source: source, kind: .notAnImage,
                         detail: bytes.isEmpty ? "file is empty, not an image"
                             : "not a PNG or JPEG file (starts with \(head))")
    }
}

/// Reads and decodes an image file; see ``decodeImage(data:source:pixelLimit:)``.
///
/// - Throws: ``MediaError`` naming `path` when the file cannot be read or does not decode.
public func loadImage(path: String, pixelLimit: Int = defaultPixelLimit) throws -> Image {
    let data: Data
    do {
        data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
    } catch {
        throw MediaError(source: path, kind: .io, detail: "cannot read the file (\(error.localizedDescription))")
    }
    return try decodeImage(data: data, source: path, pixelLimit: pixelLimit)
}

/// The image formats the decoder recognises.
public enum ImageFormat: Equatable, Sendable {
    case png
    case jpeg

    /// The format named by the data's first bytes (PNG signature, or JPEG SOI followed by a
    /// marker), or nil.
    public init?(sniffing bytes: UnsafeRawBufferPointer) {
        if PNGHeader.hasSignature(bytes) {
            self = .png
        } else if bytes.count >= 3, Array(bytes.prefix(3)) == JPEGDecoder.startOfImage {
            self = .jpeg
        } else {
            return nil
        }
    }
}
