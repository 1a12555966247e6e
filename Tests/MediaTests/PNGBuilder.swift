import Foundation
@testable import Media

/// Builds small PNG files byte by byte, for tests that need a specific (often broken) structure.
enum PNGBuilder {
    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let typeBytes = Array(type.utf8)
        let crc = (typeBytes + data).withUnsafeBytes { crc32($0) }
        return bigEndian(UInt32(data.count)) + typeBytes + data + bigEndian(crc)
    }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    static func ihdr(width: UInt32, height: UInt32, depth: UInt8, colorType: UInt8) -> [UInt8] {
        chunk("IHDR", bigEndian(width) + bigEndian(height) + [depth, colorType, 0, 0, 0])
    }

    /// A PNG whose rows (filter type 0 is prepended) are stored in one uncompressed zlib block.
    static func png(width: UInt32, height: UInt32, depth: UInt8, colorType: UInt8, rows: [[UInt8]]) -> Data {
        let raw: [UInt8] = rows.flatMap { row -> [UInt8] in [0] + row }
        return Data(PNGHeader.signature + ihdr(width: width, height: height, depth: depth, colorType: colorType)
            + chunk("IDAT", storedZlib(raw)) + chunk("IEND", []))
    }

    /// A zlib stream of one stored (uncompressed) block, with its Adler-32.
    static func storedZlib(_ data: [UInt8]) -> [UInt8] {
        precondition(data.count < 65536)
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in data { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
        let length = UInt16(data.count)
        return [0x78, 0x01, 0x01, UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8(~length >> 8)]
            + data + bigEndian(b << 16 | a)
    }
}
