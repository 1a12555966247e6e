import CJPEG
import Foundation

/// Decodes JPEG through TurboJPEG (libjpeg-turbo 2.1's `tjDecompress2`) to match Pillow 13's
/// `ImageOps.exif_transpose(Image.open(f)).convert("RGB")`.
///
/// - Pillow decodes with libjpeg-turbo's defaults, the accurate integer DCT (`JDCT_ISLOW`) and fancy
///   (triangle-filter) upsampling; TurboJPEG's defaults are the same, so YCbCr photos agree.
/// - Greyscale decodes to one channel and is replicated, as `L → RGB`.
/// - Four-channel files (CMYK, or YCCK which libjpeg turns into CMYK) are read, as Pillow reads them,
///   as Adobe-inverted CMYK ("CMYK;I": Photoshop stores 255 − ink) whatever the APP14 marker says,
///   then converted with Pillow's `cmyk2rgb`: with `nk = 255 − k`,
///   `out = clip(nk − (c·nk + 128 + ((c·nk + 128) >> 8)) >> 8)`.
/// - libjpeg warnings (corrupt or truncated entropy data) are errors, where Pillow would sometimes
///   hand back a partly grey image.
enum JPEGDecoder {
    static let startOfImage: [UInt8] = [0xFF, 0xD8, 0xFF]

    static func decode(_ bytes: UnsafeRawBufferPointer, source: String, pixelLimit: Int) throws -> Image {
        guard let handle = tjInitDecompress() else {
            throw MediaError(source: source, kind: .io, detail: "cannot start the JPEG decoder (out of memory)")
        }
        defer { tjDestroy(handle) }
        let input = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let size = UInt(bytes.count)

        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        guard tjDecompressHeader3(handle, input, size, &width, &height, &subsampling, &colorspace) == 0 else {
            throw failure(handle, source: source, during: "reading the JPEG header", size: bytes.count)
        }
        // libjpeg itself rejects a frame header with a zero dimension, so a header read that
        // "succeeds" without a size means the data ran out before the frame header.
        guard width > 0, height > 0 else {
            throw MediaError(source: source, kind: .truncated,
                             detail: "JPEG is truncated: the \(bytes.count) bytes end before the frame header")
        }
        try checkPixelLimit(width: Int(width), height: Int(height), limit: pixelLimit, format: "JPEG", source: source)

        let pixelFormat: TJPF
        let channels: Int
        switch colorspace {
        case Int32(TJCS_GRAY.rawValue): (pixelFormat, channels) = (TJPF_GRAY, 1)
        case Int32(TJCS_CMYK.rawValue), Int32(TJCS_YCCK.rawValue): (pixelFormat, channels) = (TJPF_CMYK, 4)
        default: (pixelFormat, channels) = (TJPF_RGB, 3)
        }
        let count = Int(width) * Int(height)
        var decoded = [UInt8](repeating: 0, count: count * channels)
        let flags = TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS
        let status = decoded.withUnsafeMutableBufferPointer { output in
            tjDecompress2(handle, input, size, output.baseAddress, width, 0, height,
                          Int32(pixelFormat.rawValue), Int32(flags))
        }
        guard status == 0 else {
            throw failure(handle, source: source, during: "decoding JPEG pixels", size: bytes.count)
        }

        let rgb: [UInt8]
        switch channels {
        case 1:
            rgb = [UInt8](unsafeUninitializedCapacity: count * 3) { buffer, initialized in
                for index in 0 ..< count {
                    let g = decoded[index]
                    buffer[3 * index] = g; buffer[3 * index + 1] = g; buffer[3 * index + 2] = g
                }
                initialized = count * 3
            }
        case 4:
            rgb = invertedCMYKToRGB(decoded, pixelCount: count)
        default:
            rgb = decoded
        }
        let image = Image(width: Int(width), height: Int(height), layout: .rgb, pixels: rgb)
        return image.applyingExifOrientation(ExifOrientation.read(jpeg: bytes))
    }

    /// Pillow's `CMYK;I` unpacking (each sample is 255 − ink) followed by its `cmyk2rgb`.
    static func invertedCMYKToRGB(_ stored: [UInt8], pixelCount: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: pixelCount * 3) { buffer, initialized in
            for index in 0 ..< pixelCount {
                let nk = Int(stored[4 * index + 3])  // 255 − k, with k = 255 − stored.
                for c in 0 ..< 3 {
                    let ink = 255 - Int(stored[4 * index + c])
                    let t = ink * nk + 128
                    let value = nk - (((t >> 8) + t) >> 8)
                    buffer[3 * index + c] = UInt8(clamping: value)
                }
            }
            initialized = pixelCount * 3
        }
    }

    private static func failure(_ handle: tjhandle, source: String, during step: String, size: Int) -> MediaError {
        let message = String(cString: tjGetErrorStr2(handle))
        let lowered = message.lowercased()
        let kind: MediaError.Kind =
            lowered.contains("premature end of jpeg file") ? .truncated : .corrupt
        let what = kind == .truncated ? "JPEG is truncated" : "corrupt JPEG"
        return MediaError(source: source, kind: kind, detail: "\(what) (\(step), \(size) bytes): \(message)")
    }
}
