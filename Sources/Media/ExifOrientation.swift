/// The EXIF orientation of a JPEG (tag 0x0112 in IFD0 of the first `Exif` APP1 segment), and the
/// transposition that puts the image upright, as Pillow's `ImageOps.exif_transpose`.
///
/// | value | Pillow method      | output pixel (x, y) comes from input (for a W×H input) |
/// |-------|--------------------|--------------------------------------------------------|
/// | 1     | none               | (x, y)                                                 |
/// | 2     | FLIP_LEFT_RIGHT    | (W-1-x, y)                                             |
/// | 3     | ROTATE_180         | (W-1-x, H-1-y)                                         |
/// | 4     | FLIP_TOP_BOTTOM    | (x, H-1-y)                                             |
/// | 5     | TRANSPOSE          | (y, x)                                                 |
/// | 6     | ROTATE_270         | (y, H-1-x)                                             |
/// | 7     | TRANSVERSE         | (W-1-y, H-1-x)                                         |
/// | 8     | ROTATE_90          | (W-1-y, x)                                             |
enum ExifOrientation {
    /// The orientation in 1...8, or 1 when the file has none or it cannot be read. A damaged EXIF
    /// block never fails the decode: the pixels are still good.
    static func read(jpeg bytes: UnsafeRawBufferPointer) -> Int {
        guard let exif = firstExifSegment(bytes) else { return 1 }
        return orientation(tiff: UnsafeRawBufferPointer(rebasing: bytes[exif])) ?? 1
    }

    /// The TIFF bytes of the first APP1 segment that starts with `Exif\0\0`, before the first scan.
    private static func firstExifSegment(_ bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        var offset = 2  // After SOI.
        while offset + 4 <= bytes.count {
            guard bytes[offset] == 0xFF else { return nil }
            let marker = bytes[offset + 1]
            if marker == 0xFF { offset += 1; continue }  // Fill byte.
            if marker == 0xD8 || (0xD0 ... 0xD7).contains(marker) || marker == 0x01 { offset += 2; continue }
            if marker == 0xDA || marker == 0xD9 { return nil }  // Start of scan or end of image.
            let length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let start = offset + 4, end = offset + 2 + length
            guard length >= 2, end <= bytes.count else { return nil }
            if marker == 0xE1, end - start >= 6,
               Array(bytes[start ..< start + 6]) == [0x45, 0x78, 0x69, 0x66, 0, 0] {
                return start + 6 ..< end
            }
            offset = end
        }
        return nil
    }

    /// Tag 0x0112 of IFD0 in a TIFF structure, when it is a SHORT or LONG in 1...8.
    private static func orientation(tiff: UnsafeRawBufferPointer) -> Int? {
        guard tiff.count >= 8 else { return nil }
        let little: Bool
        switch (tiff[0], tiff[1]) {
        case (0x49, 0x49): little = true
        case (0x4D, 0x4D): little = false
        default: return nil
        }
        func u16(_ at: Int) -> Int? {
            guard at >= 0, at + 2 <= tiff.count else { return nil }
            return little ? Int(tiff[at]) | Int(tiff[at + 1]) << 8 : Int(tiff[at]) << 8 | Int(tiff[at + 1])
        }
        func u32(_ at: Int) -> Int? {
            guard let a = u16(at), let b = u16(at + 2) else { return nil }
            return little ? a | b << 16 : a << 16 | b
        }
        guard u16(2) == 42, let ifd = u32(4), let count = u16(ifd) else { return nil }
        for entry in 0 ..< count {
            let at = ifd + 2 + 12 * entry
            guard let tag = u16(at) else { return nil }
            guard tag == 0x0112 else { continue }
            let value: Int?
            switch u16(at + 2) {
            case 3: value = u16(at + 8)
            case 4: value = u32(at + 8)
            default: value = nil
            }
            guard let value, (1 ... 8).contains(value) else { return nil }
            return value
        }
        return nil
    }
}

extension Image {
    /// The image turned upright for an EXIF orientation (1...8), as Pillow's `exif_transpose`;
    /// see ``ExifOrientation`` for the table. Orientations 5–8 swap width and height.
    func applyingExifOrientation(_ orientation: Int) -> Image {
        guard (2 ... 8).contains(orientation) else { return self }
        let w = width, h = height, channels = layout.channelCount
        let swaps = orientation >= 5
        let outWidth = swaps ? h : w, outHeight = swaps ? w : h
        var output = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { destination in
                for y in 0 ..< outHeight {
                    for x in 0 ..< outWidth {
                        let sx: Int, sy: Int
                        switch orientation {
                        case 2: (sx, sy) = (w - 1 - x, y)
                        case 3: (sx, sy) = (w - 1 - x, h - 1 - y)
                        case 4: (sx, sy) = (x, h - 1 - y)
                        case 5: (sx, sy) = (y, x)
                        case 6: (sx, sy) = (y, h - 1 - x)
                        case 7: (sx, sy) = (w - 1 - y, h - 1 - x)
                        default: (sx, sy) = (w - 1 - y, x)
                        }
                        let from = (sy * w + sx) * channels, to = (y * outWidth + x) * channels
                        for c in 0 ..< channels { destination[to + c] = source[from + c] }
                    }
                }
            }
        }
        return Image(width: outWidth, height: outHeight, layout: layout, pixels: output)
    }
}
