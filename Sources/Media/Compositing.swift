extension Image {
    /// An opaque colour to composite onto.
    public struct Colour: Equatable, Sendable {
        public var red: UInt8
        public var green: UInt8
        public var blue: UInt8

        public init(red: UInt8, green: UInt8, blue: UInt8) {
            self.red = red
            self.green = green
            self.blue = blue
        }

        /// White, the background Hugging Face image processors composite onto.
        public static let white = Colour(red: 255, green: 255, blue: 255)
        public static let black = Colour(red: 0, green: 0, blue: 0)
    }

    /// This image alpha-composited over an opaque background, as RGB.
    ///
    /// Bit-exact with Pillow's `Image.alpha_composite(background, image).convert("RGB")`, the
    /// integer "over" operator with 7 extra bits of precision. With an opaque background it reduces
    /// to `out = round((src * a + background * (255 - a)) / 255)`, computed as
    /// `t = 128 * (src * a + bg * (255 - a)) + 128 * 128; out = (((t >> 8) + t) >> 8) >> 7`.
    /// An RGB image is returned unchanged.
    public func composited(onto background: Colour) -> Image {
        guard layout == .rgba else { return self }
        let precision: UInt32 = 7
        let background = [UInt32(background.red), UInt32(background.green), UInt32(background.blue)]
        var output = [UInt8](repeating: 0, count: width * height * 3)
        pixels.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { destination in
                for index in 0 ..< width * height {
                    let alpha = UInt32(source[4 * index + 3])
                    for channel in 0 ..< 3 {
                        let value: UInt32
                        if alpha == 0 {
                            value = background[channel]
                        } else {
                            // Pillow's general formula with a destination alpha of 255.
                            let outAlpha255 = alpha * 255 + 255 * (255 - alpha)
                            let coefficient1 = alpha * 255 * 255 * (1 << precision) / outAlpha255
                            let coefficient2 = 255 * (1 << precision) - coefficient1
                            let blended = UInt32(source[4 * index + channel]) * coefficient1
                                + background[channel] * coefficient2 + (0x80 << precision)
                            value = (((blended >> 8) + blended) >> 8) >> precision
                        }
                        destination[3 * index + channel] = UInt8(value)
                    }
                }
            }
        }
        return Image(width: width, height: height, layout: .rgb, pixels: output)
    }

    /// This image without its alpha channel (alpha is dropped, not composited), as Pillow's
    /// `convert("RGB")` does for RGBA. An RGB image is returned unchanged.
    public func droppingAlpha() -> Image {
        guard layout == .rgba else { return self }
        var output = [UInt8](repeating: 0, count: width * height * 3)
        for index in 0 ..< width * height {
            output[3 * index] = pixels[4 * index]
            output[3 * index + 1] = pixels[4 * index + 1]
            output[3 * index + 2] = pixels[4 * index + 2]
        }
        return Image(width: width, height: height, layout: .rgb, pixels: output)
    }
}
