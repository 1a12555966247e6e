import Checkpoint
import Media
@testable import Processing
import TensorCore
import XCTest
import _TestSupport

final class PillowResamplingTests: XCTestCase {
    /// A seeded random 61×47 image resized by Pillow 13 to 17 sizes — down, up, mixed, one axis
    /// only, 1×1, and both sides of Pillow's pass-order boundary (vertical first iff h < H and
    /// 2 (W − w) < H − h: 45×10, 58×9, 60×5 and 54×30 go vertical first, 30×20 and 50×40 horizontal) —
    /// with bilinear, and 9 of them with bicubic, lanczos, box and hamming: every byte equal.
    func testResizeMatchesPillowByteForByte() throws {
        let file = try SafetensorsFile(url: Fixtures.url("\(ProcessorFixtures.directory)/resize.safetensors"))
        let source = try file.tensor("source")
        let image = Image(width: source.shape[1], height: source.shape[0], layout: .rgb,
                          pixels: source.integers().map { UInt8($0) })
        let filters: [String: ResampleFilter] = ["bilinear": .bilinear, "bicubic": .bicubic, "lanczos": .lanczos,
                                                 "box": .box, "hamming": .hamming]
        var checked = 0
        for name in file.names where name != "source" {
            let parts = name.split(separator: "_"), size = parts[1].split(separator: "x")
            let (width, height) = (Int(size[0])!, Int(size[1])!)
            let expected = try file.tensor(name)
            let resized = resizedLikePillow(image, width: width, height: height, filter: filters[String(parts[0])]!)
            XCTAssertEqual([resized.height, resized.width, 3], expected.shape, name)
            let differing = zip(resized.pixels, expected.integers()).filter { Int($0) != $1 }.count
            XCTAssertEqual(differing, 0, "\(name): \(differing) samples differ from Pillow")
            checked += 1
        }
        XCTAssertEqual(checked, 17 + 4 * 9)
    }
}
