import CPNGShim
import Foundation

/// Encodes 8-bit pixels as PNG bytes, for plots and generated data; writing them to disk is left to
/// the caller (use an atomic file write).
public enum PNGEncoder {
    /// The samples of each pixel to write.
    public enum Channels: Int, Sendable {
        case grey = 1
        case greyAlpha = 2
        case rgb = 3
        case rgba = 4
    }

    /// Encodes an image (RGB or RGBA, 8 bits a sample, not interlaced).
    ///
    /// Decoding the result gives back `image` exactly.
    /// - Parameter compressionLevel: zlib level, 0 (store) to 9 (smallest); 6 by default.
    public static func encode(_ image: Image, compressionLevel: Int = 6) throws -> Data {
        try encode(pixels: image.pixels, width: image.width, height: image.height,
                   channels: image.layout == .rgb ? .rgb : .rgba, compressionLevel: compressionLevel)
    }

    /// Encodes rows of interleaved 8-bit samples, `width * height * channels.rawValue` of them.
    ///
    /// - Throws: ``MediaError`` when the sample count does not match the dimensions, a dimension is
    ///   zero or above 2^31-1, or libpng fails.
    public static func encode(pixels: [UInt8], width: Int, height: Int, channels: Channels,
                              compressionLevel: Int = 6) throws -> Data {
        let source = "PNG encoder"
        guard width > 0, height > 0, width <= Int(PNGHeader.maximumDimension), height <= Int(PNGHeader.maximumDimension) else {
            throw MediaError(source: source, kind: .invalidDimensions,
                             detail: "cannot write a \(width)x\(height) PNG; each side must be 1 to 2^31-1")
        }
        guard pixels.count == width * height * channels.rawValue else {
            throw MediaError(source: source, kind: .invalidDimensions,
                             detail: "\(pixels.count) samples do not fill a \(width)x\(height) image "
                                 + "of \(channels.rawValue) channels (\(width * height * channels.rawValue) needed)")
        }
        var output: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = pixels.withUnsafeBufferPointer { samples in
            vlm_png_encode(samples.baseAddress, UInt32(width), UInt32(height), Int32(channels.rawValue),
                           Int32(max(0, min(9, compressionLevel))), &output, &size, &message, message.count)
        }
        guard status == 0, let output else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw MediaError(source: source, kind: .io, detail: "libpng could not encode the image: \(text)")
        }
        return Data(bytesNoCopy: output, count: size, deallocator: .free)
    }
}
