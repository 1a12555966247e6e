/// A decoded image: 8-bit samples, rows top to bottom, channels interleaved.
///
/// Pixel `(x, y)` channel `c` is `pixels[(y * width + x) * layout.channelCount + c]`.
public struct Image: Equatable, Sendable {
    /// The channels each pixel carries.
    public enum ChannelLayout: Equatable, Sendable {
        /// Red, green, blue.
        case rgb
        /// Red, green, blue, straight (not premultiplied) alpha.
        case rgba

        /// Samples per pixel: 3 or 4.
        public var channelCount: Int { self == .rgb ? 3 : 4 }
    }

    /// Width in pixels.
    public let width: Int
    /// Height in pixels.
    public let height: Int
    /// The channel layout.
    public let layout: ChannelLayout
    /// `width * height * layout.channelCount` samples, row-major.
    public var pixels: [UInt8]

    /// Wraps pixels; `pixels.count` must be `width * height * layout.channelCount`.
    public init(width: Int, height: Int, layout: ChannelLayout, pixels: [UInt8]) {
        guard width >= 0 && height >= 0 else { fatalError("image dimensions must not be negative (\(width)x\(height))") }
        guard pixels.count == width * height * layout.channelCount else {
            fatalError("\(pixels.count) samples for a \(width)x\(height) \(layout) image")
        }
        self.width = width
        self.height = height
        self.layout = layout
        self.pixels = pixels
    }

    /// Samples per row.
    public var rowStride: Int { width * layout.channelCount }

    /// The samples of pixel `(x, y)`.
    public subscript(x: Int, y: Int) -> ArraySlice<UInt8> {
        let start = (y * width + x) * layout.channelCount
        return pixels[start ..< start + layout.channelCount]
    }
}
