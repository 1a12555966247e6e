import Foundation
import Testing
import _TestSupport
@testable import Media

private func fixtureBytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: Fixtures.url("media/\(name)")))
}

/// Decodes and, on failure, checks the error is a MediaError that names the source and says
/// something; returns the error kind, or nil when the bytes decoded.
@discardableResult
private func decodeOrDescribe(_ bytes: [UInt8], source: String) -> MediaError.Kind? {
    do {
        let image = try decodeImage(data: Data(bytes), source: source)
        #expect(image.width > 0 && image.height > 0 && image.pixels.count == image.width * image.height * image.layout.channelCount)
        return nil
    } catch let error as MediaError {
        #expect(error.source == source && error.detail.count > 10, "vague error: \(error)")
        #expect("\(error)".hasPrefix(source))
        return error.kind
    } catch {
        Issue.record("\(source): not a MediaError: \(error)")
        return .io
    }
}

@Suite("Malformed input")
struct MalformedInputTests {
    static let seedFiles = ["png_rgb8.png", "png_palette4_interlaced.png", "png_rgba16.png", "png_rgb8_gamma_srgb_iccp.png",
                            "jpeg_baseline_420.jpg", "jpeg_progressive.jpg", "jpeg_cmyk.jpg", "jpeg_orientation6.jpg"]

    /// 8 files × (60 truncations + 60 single-byte corruptions + 20 multi-byte ones) = 1,120 cases.
    @Test("Truncating or corrupting real PNG and JPEG files never crashes: each decodes or throws a descriptive error",
          arguments: seedFiles)
    func seededMutations(file: String) throws {
        let original = try fixtureBytes(file)
        var random = SeededGenerator(seed: UInt64(file.utf8.reduce(5381) { $0 &* 33 &+ Int($1) } & 0xFFFF_FFFF))
        var failures = 0
        for trial in 0 ..< 60 {
            // Half the cuts land in the first 128 bytes, where the headers are.
            let cut = trial % 2 == 0 ? Int.random(in: 0 ..< min(128, original.count), using: &random)
                                     : Int.random(in: 0 ..< original.count, using: &random)
            if decodeOrDescribe(Array(original[..<cut]), source: "\(file) cut at \(cut)") != nil { failures += 1 }
        }
        for trial in 0 ..< 80 {
            var mutated = original
            let flips = trial < 60 ? 1 : 8
            var positions = [Int]()
            for _ in 0 ..< flips {
                let position = Int.random(in: 0 ..< original.count, using: &random)
                mutated[position] ^= UInt8.random(in: 1 ... 255, using: &random)
                positions.append(position)
            }
            decodeOrDescribe(mutated, source: "\(file) with bytes \(positions) changed")
        }
        // Most cuts must fail: a truncated file is not an image.
        #expect(failures >= 55, "\(file): only \(failures) of 60 truncations were rejected")
    }

    @Test("A corrupted byte inside a PNG chunk is reported as a bad CRC naming the chunk")
    func badCRC() throws {
        var bytes = try fixtureBytes("png_rgb8.png")
        let idat = try #require(chunkOffset("IDAT", in: bytes))
        bytes[idat + 8 + 10] ^= 0x55
        #expect(decodeOrDescribe(bytes, source: "idat.png") == .badChecksum(chunk: "IDAT"))

        var header = try fixtureBytes("png_rgb8.png")
        header[18] ^= 0x01  // Inside IHDR's width.
        #expect(decodeOrDescribe(header, source: "ihdr.png") == .badChecksum(chunk: "IHDR"))

        var text = try fixtureBytes("png_rgb8_gamma_srgb_iccp.png")
        let tEXt = try #require(chunkOffset("tEXt", in: text))
        text[tEXt + 9] ^= 0x20
        #expect(decodeOrDescribe(text, source: "text.png") == .badChecksum(chunk: "tEXt"))
        do {
            _ = try decodeImage(data: Data(text), source: "text.png")
        } catch {
            #expect("\(error)" == "text.png: bad CRC in PNG chunk tEXt (the file is corrupt)")
        }
    }

    @Test("IHDR with a zero or over-large width or height is rejected before decoding")
    func wrongDimensions() {
        for (width, height) in [(0, 10), (10, 0), (0x8000_0000, 1), (1, 0xFFFF_FFFF)] as [(UInt32, UInt32)] {
            let png = PNGBuilder.png(width: width, height: height, depth: 8, colorType: 0, rows: [[0]])
            #expect(decodeOrDescribe([UInt8](png), source: "\(width)x\(height).png") == .invalidDimensions)
        }
    }

    /// Pillow fills missing rows with zeros without complaint; a file whose IHDR promises more rows
    /// than its data holds is corrupt, so here it is an error. Extra rows are ignored, as Pillow does.
    @Test("IHDR promising more rows than IDAT holds is an error; surplus rows are ignored as in Pillow")
    func dimensionsDisagreeWithData() throws {
        let short = PNGBuilder.png(width: 2, height: 4, depth: 8, colorType: 0, rows: [[1, 2], [3, 4]])
        #expect(decodeOrDescribe([UInt8](short), source: "short.png") == .corrupt)
        #expect(throws: MediaError.self) { try decodeImage(data: short, source: "short.png") }
        let long = PNGBuilder.png(width: 2, height: 2, depth: 8, colorType: 0, rows: [[1, 2], [3, 4], [5, 6], [7, 8]])
        #expect(try decodeImage(data: long, source: "long.png").pixels == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4])
    }

    @Test("A JPEG frame header with a zero height is an error, and one of 65280x65280 exceeds the pixel limit")
    func jpegFrameDimensions() throws {
        let original = try fixtureBytes("jpeg_baseline_420.jpg")
        let frame = try #require(original.indices.dropLast().first { original[$0] == 0xFF && original[$0 + 1] == 0xC0 })
        var zero = original
        zero[frame + 5] = 0; zero[frame + 6] = 0  // Height.
        #expect(decodeOrDescribe(zero, source: "zero.jpg") != nil)
        var huge = original
        huge[frame + 5 ... frame + 8] = [0xFF, 0x00, 0xFF, 0x00]  // libjpeg's limit is 65500 a side.
        #expect(decodeOrDescribe(huge, source: "huge.jpg") == .tooManyPixels)
    }

    @Test("Images above the pixel limit are refused as decompression bombs, before any pixel is decoded")
    func pixelLimit() throws {
        let bomb = PNGBuilder.png(width: 20_000, height: 20_000, depth: 1, colorType: 0, rows: [[0]])
        #expect(decodeOrDescribe([UInt8](bomb), source: "bomb.png") == .tooManyPixels)
        let photo = Fixtures.url("media/jpeg_baseline_420.jpg").path
        #expect(throws: MediaError.self) { try loadImage(path: photo, pixelLimit: 99 * 75 - 1) }
        #expect(try loadImage(path: photo, pixelLimit: 99 * 75).width == 99)
    }

    @Test("Files cut short are reported as truncated")
    func truncated() throws {
        let png = try fixtureBytes("png_rgb8.png")
        #expect(decodeOrDescribe(Array(png[..<(png.count / 2)]), source: "half.png") == .truncated)
        #expect(decodeOrDescribe(Array(png[..<20]), source: "header.png") == .truncated)
        let jpeg = try fixtureBytes("jpeg_baseline_420.jpg")
        #expect(decodeOrDescribe(Array(jpeg[..<(jpeg.count / 2)]), source: "half.jpg") == .truncated)
        let progressive = try fixtureBytes("jpeg_progressive.jpg")
        #expect(decodeOrDescribe(Array(progressive[..<(progressive.count - 40)]), source: "cut.jpg") == .truncated)
    }

    @Test("Bytes that are not PNG or JPEG, and missing files, give errors naming the source")
    func notAnImage() {
        #expect(decodeOrDescribe(Array("hello, world".utf8), source: "notes.txt") == .notAnImage)
        #expect(decodeOrDescribe([], source: "empty.png") == .notAnImage)
        #expect(decodeOrDescribe(Array("GIF89a".utf8) + [0, 0, 0, 0], source: "anim.gif") == .notAnImage)
        #expect(decodeOrDescribe([0xFF, 0xD8, 0xFF], source: "soi.jpg") != nil)
        #expect {
            try loadImage(path: "/nonexistent/photo.png")
        } throws: { error in
            (error as? MediaError)?.kind == .io && "\(error)".hasPrefix("/nonexistent/photo.png: ")
        }
    }

    private func chunkOffset(_ type: String, in bytes: [UInt8]) -> Int? {
        var offset = 8
        while offset + 8 <= bytes.count {
            let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            if String(decoding: bytes[offset + 4 ..< offset + 8], as: UTF8.self) == type { return offset }
            offset += 12 + length
        }
        return nil
    }
}
