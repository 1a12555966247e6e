import Foundation
import Testing
import _TestSupport
@testable import Media

@Suite("JPEG decoding against Pillow")
struct JPEGDecodingTests {
    /// Pillow (libjpeg-turbo 3.x in its wheel) and TurboJPEG 2.1 here both use the islow DCT and
    /// fancy upsampling; the tolerance is ±1 per channel, and today every fixture matches exactly.
    @Test("Every JPEG fixture is within 1 of Pillow's exif_transpose + convert('RGB') per channel",
          arguments: PillowReference.named("jpeg_"))
    func fixtureMatchesPillow(reference: PillowReference) throws {
        let image = try loadImage(path: reference.fileURL.path)
        #expect(image.width == reference.width && image.height == reference.height)
        #expect(image.layout == .rgb)
        let pillow = try reference.pillowPixels()
        try #require(image.pixels.count == pillow.count)
        let worst = maximumAbsoluteDifference(image.pixels, pillow)
        let first = firstDifference(image.pixels, pillow, width: image.width, channels: 3)
        #expect(worst <= 1, "\(reference.name): max abs diff \(worst); first: \(first)")
    }

    @Test("The fixture set covers baseline, progressive, grey, CMYK, YCCK and all 8 EXIF orientations")
    func coverage() {
        let names = Set(PillowReference.named("jpeg_").map(\.name))
        let required = ["jpeg_baseline_420", "jpeg_baseline_422", "jpeg_baseline_444", "jpeg_progressive",
                        "jpeg_grey", "jpeg_cmyk", "jpeg_ycck", "jpeg_astronaut_q95", "jpeg_coffee_full_q90"]
            + (1 ... 8).map { "jpeg_orientation\($0)" }
        for name in required { #expect(names.contains(name), "missing fixture \(name)") }
    }

    @Test("Orientations 5 to 8 swap width and height; 1 to 4 keep them")
    func orientationDimensions() throws {
        for orientation in 1 ... 8 {
            let image = try loadImage(path: Fixtures.url("media/jpeg_orientation\(orientation).jpg").path)
            let expected = orientation >= 5 ? (23, 37) : (37, 23)
            #expect((image.width, image.height) == expected, "orientation \(orientation)")
        }
    }

    /// Pillow's `cmyk2rgb` after `CMYK;I` unpacking, worked for three stored (inverted) samples:
    /// stored (255, 0, 128, 255) means ink c = 0, m = 255, y = 127, k = 0, so nk = 255 and
    /// out = 255 − c·255/255 = (255, 0, 128); stored k = 0 means full black ink, so nk = 0 → 0.
    @Test("Inverted CMYK converts to RGB with Pillow's cmyk2rgb arithmetic")
    func cmykArithmetic() {
        #expect(JPEGDecoder.invertedCMYKToRGB([255, 0, 128, 255], pixelCount: 1) == [255, 0, 128])
        #expect(JPEGDecoder.invertedCMYKToRGB([10, 200, 30, 0], pixelCount: 1) == [0, 0, 0])
        // nk = 128, ink c = 155: 155·128 + 128 = 19968; (19968 >> 8) + 19968 = 20046; >> 8 = 78; 128 − 78 = 50.
        #expect(JPEGDecoder.invertedCMYKToRGB([100, 255, 0, 128], pixelCount: 1) == [50, 128, 0])
    }
}
