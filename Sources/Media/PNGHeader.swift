/// The PNG signature and IHDR chunk, read in Swift before libpng sees the file, so that sniffing,
/// zero or huge dimensions and the pixel limit give precise errors without decoding anything.
struct PNGHeader {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// The largest width or height the PNG specification allows (2^31 - 1).
    static let maximumDimension: UInt32 = 0x7FFF_FFFF

    let width: Int
    let height: Int

    static func hasSignature(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= signature.count && zip(bytes, signature).allSatisfy { $0 == $1 }
    }

    /// Reads and checks the IHDR chunk that must follow the signature.
    init(_ bytes: UnsafeRawBufferPointer, source: String, pixelLimit: Int) throws {
        func fail(_ kind: MediaError.Kind, _ detail: String) -> MediaError {
            MediaError(source: source, kind: kind, detail: detail)
        }
        // Signature (8) + length (4) + type (4) + IHDR data (13) + CRC (4).
        guard bytes.count >= 33 else {
            throw fail(.truncated, "PNG is truncated: \(bytes.count) bytes end inside the IHDR chunk")
        }
        let length = bigEndianUInt32(bytes, at: 8)
        let type = String(decoding: bytes[12 ..< 16], as: UTF8.self)
        guard type == "IHDR" else {
            throw fail(.corrupt, "PNG's first chunk is '\(type)', not IHDR")
        }
        guard length == 13 else {
            throw fail(.corrupt, "PNG's IHDR chunk is \(length) bytes long, not 13")
        }
        guard crc32(UnsafeRawBufferPointer(rebasing: bytes[12 ..< 29])) == bigEndianUInt32(bytes, at: 29) else {
            throw fail(.badChecksum(chunk: "IHDR"), "bad CRC in PNG chunk IHDR (the file is corrupt)")
        }
        let width = bigEndianUInt32(bytes, at: 16)
        let height = bigEndianUInt32(bytes, at: 20)
        guard width > 0, height > 0 else {
            throw fail(.invalidDimensions, "PNG's IHDR gives a \(width)x\(height) image; width and height must be at least 1")
        }
        guard width <= Self.maximumDimension, height <= Self.maximumDimension else {
            throw fail(.invalidDimensions,
                       "PNG's IHDR gives a \(width)x\(height) image; PNG allows at most 2^31-1 pixels a side")
        }
        try checkPixelLimit(width: Int(width), height: Int(height), limit: pixelLimit, format: "PNG", source: source)
        self.width = Int(width)
        self.height = Int(height)
    }
}

/// Throws when `width * height` is above `limit`, the guard against decompression bombs.
func checkPixelLimit(width: Int, height: Int, limit: Int, format: String, source: String) throws {
    let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
    guard !overflow, pixels <= limit else {
        throw MediaError(
            source: source, kind: .tooManyPixels,
            detail: "\(format) is \(width)x\(height)\(overflow ? "" : " = \(pixels)") pixels, above the limit of \(limit) "
                + "(a guard against decompression bombs)")
    }
}

func bigEndianUInt32(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
    (UInt32(bytes[offset]) << 24) | (UInt32(bytes[offset + 1]) << 16)
        | (UInt32(bytes[offset + 2]) << 8) | UInt32(bytes[offset + 3])
}

/// The CRC-32 that PNG chunks carry (ISO 3309, polynomial 0xEDB88320, reflected).
func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc = crc32Table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
    }
    return crc ^ 0xFFFF_FFFF
}

private let crc32Table: [UInt32] = (0 ..< 256).map { index -> UInt32 in
    var value = UInt32(index)
    for _ in 0 ..< 8 { value = (value & 1) != 0 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
    return value
}
