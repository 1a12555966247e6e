import Testing
import _TestSupport
@testable import Media

@Suite("Alpha compositing")
struct CompositingTests {
    @Test("Compositing RGBA on white equals Pillow's alpha_composite then convert('RGB')")
    func matchesPillow() throws {
        let reference = PillowReference.entry("composite_rgba8_on_white")
        let image = try loadImage(path: reference.fileURL.path)
        let composited = image.composited(onto: .white)
        #expect(composited.layout == .rgb)
        #expect(composited.pixels == (try reference.pillowPixels()))
    }

    /// Opaque pixels keep their colour; transparent ones take the background; half alpha:
    /// t = 128·(200·128 + 0·127) + 16384 = 3293184; ((t >> 8) + t) >> 8 >> 7 = 100.
    @Test("Opaque, transparent and half-transparent pixels composite as worked by hand")
    func workedExamples() {
        let image = Image(width: 3, height: 1, layout: .rgba,
                          pixels: [10, 20, 30, 255, 10, 20, 30, 0, 200, 200, 200, 128])
        #expect(image.composited(onto: .black).pixels == [10, 20, 30, 0, 0, 0, 100, 100, 100])
        #expect(image.composited(onto: .white).pixels[3 ..< 6] == [255, 255, 255])
    }
}
