import Foundation
import Testing
import _TestSupport
@testable import Media

@Suite("PNG decoding against Pillow")
struct PNGDecodingTests {
    @Test("Every PNG fixture decodes to exactly Pillow's convert('RGB') or convert('RGBA') pixels",
          arguments: PillowReference.named("png_"))
    func fixtureMatchesPillow(reference: PillowReference) throws {
        let image = try loadImage(path: reference.fileURL.path)
        #expect(image.width == reference.width && image.height == reference.height)
        #expect(image.layout == reference.layout)
        let pillow = try reference.pillowPixels()
        #expect(image.pixels == pillow,
                "\(reference.name): \(firstDifference(image.pixels, pillow, width: image.width, channels: reference.channels))")
    }

    @Test("The shared reference PNGs (photos, 37x300 grey, 64-colour palette, RGBA) match Pillow's pixel CRC",
          .enabled(if: Fixtures.hasSharedReference("images"), Comment(rawValue: Fixtures.sharedReferenceNote("images/"))),
          arguments: PillowReference.named("shared/"))
    func sharedMatchesPillow(reference: PillowReference) throws {
        let image = try loadImage(path: reference.fileURL.path)
        #expect(image.width == reference.width && image.height == reference.height)
        #expect(image.layout == reference.layout)
        #expect(image.pixels.withUnsafeBytes { crc32($0) } == reference.crc32)
    }

    @Test("The fixture set covers every PNG colour type, bit depth, interlacing and tRNS case")
    func coverage() {
        let names = Set(PillowReference.named("png_").map(\.name))
        for required in ["png_grey1", "png_grey2", "png_grey4", "png_grey8", "png_grey16",
                         "png_greyalpha8", "png_greyalpha16", "png_rgb8", "png_rgb16", "png_rgba8", "png_rgba16",
                         "png_palette1", "png_palette2", "png_palette4", "png_palette8",
                         "png_palette8_trns", "png_palette8_trns_index", "png_palette4_trns",
                         "png_grey8_trns", "png_grey4_trns_key3", "png_grey1_trns", "png_grey16_trns",
                         "png_rgb8_trns", "png_rgb16_trns", "png_rgb8_interlaced", "png_rgba8_interlaced",
                         "png_grey1_interlaced", "png_palette4_interlaced", "png_rgb16_interlaced",
                         "png_palette8_short_plte", "png_rgb8_gamma_srgb_iccp"] {
            #expect(names.contains(required), "missing fixture \(required)")
        }
    }

    /// 16-bit rule, worked by hand: grey is Pillow's `I;16`, which clamps (300 → 255, 200 → 200);
    /// RGB keeps the high byte (0x1234 → 0x12).
    @Test("16-bit grey clamps to 255 and 16-bit colour keeps the high byte, as Pillow does")
    func sixteenBitRule() throws {
        let grey = PNGBuilder.png(width: 3, height: 1, depth: 16, colorType: 0,
                                  rows: [[0x00, 0xC8, 0x01, 0x2C, 0xFF, 0xFF]])
        let decodedGrey = try decodeImage(data: grey, source: "grey16")
        #expect(decodedGrey.pixels == [200, 200, 200, 255, 255, 255, 255, 255, 255])
        let rgb = PNGBuilder.png(width: 1, height: 1, depth: 16, colorType: 2,
                                 rows: [[0x12, 0x34, 0x00, 0xFF, 0xAB, 0x00]])
        #expect(try decodeImage(data: rgb, source: "rgb16").pixels == [0x12, 0x00, 0xAB])
    }
}
