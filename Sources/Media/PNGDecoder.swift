import CPNGShim
import Foundation

/// Decodes PNG through libpng (behind `CPNGShim`) and converts the samples exactly as Pillow 13's
/// `Image.open(f).convert("RGB")` — or `convert("RGBA")` when the file has an alpha channel or a
/// tRNS chunk.
///
/// Pillow's rules, which this reproduces sample for sample (each checked in `PNGDecodingTests`):
/// - 1/2/4-bit grey scale to 8 bits by ×255, ×85, ×17; palette indices are looked up, and an index
///   past the end of PLTE gives black.
/// - 16-bit grey is Pillow's mode `I;16`, and `I;16 → RGB` *clamps*: a sample becomes
///   `min(v, 255)` (so almost every 16-bit grey photo comes out white where `v ≥ 255`).
/// - 16-bit RGB, grey+alpha and RGBA keep the high byte of every sample (`v >> 8`).
/// - tRNS on a palette gives each entry its alpha (entries past the end of tRNS are opaque).
/// - tRNS on grey or RGB makes a pixel transparent when its *converted 8-bit* value equals the
///   tRNS value's low byte (`key & 0xFF`), per channel; for 1-bit grey a nonzero key means white.
///   This is what Pillow's `convert_transparent` does, including for 2/4/16-bit files where the
///   comparison is between differently scaled numbers.
/// - gAMA, cHRM, sRGB and iCCP are ignored, as Pillow does when it converts.
enum PNGDecoder {
    static func decode(_ bytes: UnsafeRawBufferPointer, source: String, pixelLimit: Int) throws -> Image {
        _ = try PNGHeader(bytes, source: source, pixelLimit: pixelLimit)
        var raw = vlm_png_raw()
        let status = vlm_png_decode(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, &raw)
        defer { vlm_png_release(&raw) }
        guard status == 0 else { throw error(from: &raw, bytes: bytes, source: source) }
        return convert(raw)
    }

    /// The most precise account of a failed decode. libpng inflates IDAT data before it reaches the
    /// chunk's CRC, so a damaged IDAT usually fails as a zlib error first; a failed decode therefore
    /// re-walks the chunks and reports a bad CRC or a cut-short chunk when it finds one.
    private static func error(from raw: inout vlm_png_raw, bytes: UnsafeRawBufferPointer, source: String) -> MediaError {
        let message = withUnsafeBytes(of: &raw.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let range = message.range(of: ": CRC error") {
            let chunk = String(message[..<range.lowerBound])
            return MediaError(source: source, kind: .badChecksum(chunk: chunk),
                              detail: "bad CRC in PNG chunk \(chunk) (the file is corrupt)")
        }
        switch firstDamagedChunk(bytes) {
        case .badChecksum(let chunk, let offset):
            return MediaError(source: source, kind: .badChecksum(chunk: chunk),
                              detail: "bad CRC in PNG chunk \(chunk) at byte \(offset) (the file is corrupt)")
        case .cutShort(let chunk?, let offset):
            return MediaError(source: source, kind: .truncated,
                              detail: "PNG is truncated: chunk \(chunk) at byte \(offset) runs past the end of the \(bytes.count) bytes")
        case .cutShort(nil, let offset):
            return MediaError(source: source, kind: .truncated,
                              detail: "PNG is truncated: the \(bytes.count) bytes end inside the chunk header at byte \(offset)")
        case nil:
            if raw.truncated != 0 {
                return MediaError(source: source, kind: .truncated,
                                  detail: "PNG is truncated: the \(bytes.count) bytes end before IEND")
            }
            return MediaError(source: source, kind: .corrupt, detail: "corrupt PNG: \(message)")
        }
    }

    private enum ChunkDamage {
        case badChecksum(chunk: String, offset: Int)
        case cutShort(chunk: String?, offset: Int)
    }

    /// Walks the chunk list up to IEND, checking every length and CRC.
    private static func firstDamagedChunk(_ bytes: UnsafeRawBufferPointer) -> ChunkDamage? {
        var offset = PNGHeader.signature.count
        while offset + 8 <= bytes.count {
            let length = Int(bigEndianUInt32(bytes, at: offset))
            let type = String(decoding: bytes[offset + 4 ..< offset + 8].map { (0x20 ... 0x7E).contains($0) ? $0 : 0x3F },
                              as: UTF8.self)
            guard length <= bytes.count - offset - 12 else { return .cutShort(chunk: type, offset: offset) }
            let stored = bigEndianUInt32(bytes, at: offset + 8 + length)
            if crc32(UnsafeRawBufferPointer(rebasing: bytes[offset + 4 ..< offset + 8 + length])) != stored {
                return .badChecksum(chunk: type, offset: offset)
            }
            if type == "IEND" { return nil }
            offset += 12 + length
        }
        return offset < bytes.count ? .cutShort(chunk: nil, offset: offset) : nil
    }

    private static func convert(_ raw: vlm_png_raw) -> Image {
        var raw = raw
        let width = Int(raw.width), height = Int(raw.height)
        let depth = Int(raw.bit_depth), colorType = Int(raw.color_type)
        let samples = UnsafeBufferPointer(start: raw.pixels, count: raw.row_bytes * height)
        let rowBytes = raw.row_bytes

        // One byte per sample from libpng for depth ≤ 8; two big-endian bytes for 16.
        func sample(_ row: Int, _ index: Int) -> Int {
            depth == 16
                ? (Int(samples[row * rowBytes + 2 * index]) << 8) | Int(samples[row * rowBytes + 2 * index + 1])
                : Int(samples[row * rowBytes + index])
        }

        // The common photo cases need no conversion: copy libpng's rows as they are.
        if depth == 8, (colorType == 2 && raw.has_key == 0) || colorType == 6 {
            let layout: Image.ChannelLayout = colorType == 6 ? .rgba : .rgb
            return Image(width: width, height: height, layout: layout, pixels: Array(samples))
        }

        switch colorType {
        case 0:  // Grey.
            let scale = [1: 255, 2: 85, 4: 17, 8: 1, 16: 1][depth] ?? 1
            let grey: (Int, Int) -> UInt8 = { row, x in
                UInt8(depth == 16 ? min(sample(row, x), 255) : sample(row, x) * scale)
            }
            guard raw.has_key != 0 else {
                return build(width, height, .rgb) { row, x, out in
                    let g = grey(row, x)
                    out[0] = g; out[1] = g; out[2] = g
                }
            }
            let key = depth == 1 ? (raw.key.0 != 0 ? 255 : 0) : UInt8(truncatingIfNeeded: raw.key.0)
            return build(width, height, .rgba) { row, x, out in
                let g = grey(row, x)
                out[0] = g; out[1] = g; out[2] = g
                out[3] = g == key ? 0 : 255
            }
        case 2:  // RGB.
            let shift = depth == 16 ? 8 : 0
            guard raw.has_key != 0 else {
                return build(width, height, .rgb) { row, x, out in
                    for c in 0 ..< 3 { out[c] = UInt8(sample(row, 3 * x + c) >> shift) }
                }
            }
            let key = [raw.key.0, raw.key.1, raw.key.2].map { UInt8(truncatingIfNeeded: $0) }
            return build(width, height, .rgba) { row, x, out in
                for c in 0 ..< 3 { out[c] = UInt8(sample(row, 3 * x + c) >> shift) }
                out[3] = (out[0] == key[0] && out[1] == key[1] && out[2] == key[2]) ? 0 : 255
            }
        case 3:  // Palette.
            var palette = [UInt8](repeating: 0, count: 256 * 4)
            withUnsafeBytes(of: &raw.palette) { entries in
                for index in 0 ..< Int(raw.palette_count) {
                    for c in 0 ..< 3 { palette[4 * index + c] = entries[3 * index + c] }
                }
            }
            let hasAlpha = raw.palette_alpha_count > 0
            withUnsafeBytes(of: &raw.palette_alpha) { alphas in
                for index in 0 ..< 256 {
                    palette[4 * index + 3] = index < Int(raw.palette_alpha_count) ? alphas[index] : 255
                }
            }
            let channels = hasAlpha ? 4 : 3
            return build(width, height, hasAlpha ? .rgba : .rgb) { row, x, out in
                let entry = 4 * sample(row, x)
                for c in 0 ..< channels { out[c] = palette[entry + c] }
            }
        case 4:  // Grey + alpha.
            let shift = depth == 16 ? 8 : 0
            return build(width, height, .rgba) { row, x, out in
                let g = UInt8(sample(row, 2 * x) >> shift)
                out[0] = g; out[1] = g; out[2] = g
                out[3] = UInt8(sample(row, 2 * x + 1) >> shift)
            }
        default:  // 6, RGBA (libpng rejects any other colour type).
            let shift = depth == 16 ? 8 : 0
            return build(width, height, .rgba) { row, x, out in
                for c in 0 ..< 4 { out[c] = UInt8(sample(row, 4 * x + c) >> shift) }
            }
        }
    }

    /// Fills an image pixel by pixel; `fill(row, x, out)` writes one pixel's channels.
    private static func build(_ width: Int, _ height: Int, _ layout: Image.ChannelLayout,
                              _ fill: (Int, Int, UnsafeMutablePointer<UInt8>) -> Void) -> Image {
        let channels = layout.channelCount
        let pixels = [UInt8](unsafeUninitializedCapacity: width * height * channels) { buffer, count in
            for row in 0 ..< height {
                for x in 0 ..< width { fill(row, x, buffer.baseAddress! + (row * width + x) * channels) }
            }
            count = width * height * channels
        }
        return Image(width: width, height: height, layout: layout, pixels: pixels)
    }
}
