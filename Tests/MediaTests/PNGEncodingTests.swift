import Foundation
import Testing
import _TestSupport
@testable import Media

@Suite("PNG encoding")
struct PNGEncodingTests {
    /// The 23x17 RGBA gradient that Scripts/fixtures/make_media_fixtures.py checks Pillow reads
    /// from encoded_by_vlmkit.png: r = 11x, g = 15y, b = xy, a = 7(x + y), each mod 256.
    static func gradient() -> Image {
        var pixels = [UInt8]()
        for y in 0 ..< 17 {
            for x in 0 ..< 23 {
                pixels += [UInt8(11 * x % 256), UInt8(15 * y % 256), UInt8(x * y % 256), UInt8(7 * (x + y) % 256)]
            }
        }
        return Image(width: 23, height: 17, layout: .rgba, pixels: pixels)
    }

    @Test("RGB and RGBA images survive encode then decode bit for bit")
    func roundTrip() throws {
        let rgba = Self.gradient()
        #expect(try decodeImage(data: PNGEncoder.encode(rgba), source: "rgba") == rgba)
        let rgb = rgba.droppingAlpha()
        #expect(try decodeImage(data: PNGEncoder.encode(rgb, compressionLevel: 0), source: "rgb") == rgb)
        let photo = try loadImage(path: Fixtures.url("media/png_rgb8.png").path)
        #expect(try decodeImage(data: PNGEncoder.encode(photo, compressionLevel: 9), source: "photo") == photo)
    }

    @Test("Grey and grey+alpha samples encode and decode as Pillow would read them")
    func greyRoundTrip() throws {
        let grey = try PNGEncoder.encode(pixels: [0, 100, 200, 255], width: 2, height: 2, channels: .grey)
        #expect(try decodeImage(data: grey, source: "grey").pixels == [0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255])
        let greyAlpha = try PNGEncoder.encode(pixels: [9, 50, 200, 255], width: 2, height: 1, channels: .greyAlpha)
        #expect(try decodeImage(data: greyAlpha, source: "greyAlpha").pixels == [9, 9, 9, 50, 200, 200, 200, 255])
    }

    @Test("A sample count that does not fill the image is an error naming both numbers")
    func wrongSampleCount() {
        #expect {
            try PNGEncoder.encode(pixels: [1, 2, 3], width: 2, height: 1, channels: .rgb)
        } throws: { error in
            (error as? MediaError)?.kind == .invalidDimensions && "\(error)".contains("3 samples")
        }
    }

    /// encoded_by_vlmkit.png was written by this encoder (`VLM_WRITE_ENCODED_PNG=1`) and checked
    /// against Pillow by the fixture script; here it must still decode to the gradient.
    @Test("The committed PNG this encoder wrote, which Pillow reads exactly, decodes to the gradient")
    func committedEncodedFile() throws {
        let url = Fixtures.url("media/encoded_by_vlmkit.png")
        if ProcessInfo.processInfo.environment["VLM_WRITE_ENCODED_PNG"] == "1" {
            try PNGEncoder.encode(Self.gradient()).write(to: url)
        }
        #expect(try loadImage(path: url.path) == Self.gradient())
    }
}
