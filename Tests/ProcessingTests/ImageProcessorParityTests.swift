import Checkpoint
import Foundation
import Media
@testable import Processing
import TensorCore
import XCTest
import _TestSupport

/// The fixtures written by `Scripts/fixtures/make_processor_fixtures.py` with transformers 4.45.2.
struct ProcessorFixtures {
    struct ImageCase: Decodable {
        let images: [[String]]
        let tileSize: Int
        let maxImageTiles: Int
        let numTiles: [[Int]]
        enum CodingKeys: String, CodingKey {
            case images, tileSize = "tile_size", maxImageTiles = "max_image_tiles", numTiles = "num_tiles"
        }
    }

    struct BigCase: Decodable {
        let name: String, images: [[String]], shape: [Int], crc32: UInt32, sum: Double, absSum: Double
        let tileSize: Int, maxImageTiles: Int, aspectRatioIDs: [[Int]], numTiles: [[Int]]
        enum CodingKeys: String, CodingKey {
            case name, images, shape, crc32, sum, absSum = "abs_sum", tileSize = "tile_size"
            case maxImageTiles = "max_image_tiles", aspectRatioIDs = "aspect_ratio_ids", numTiles = "num_tiles"
        }
    }

    struct ProcessorCase: Decodable {
        let name: String, prompts: [String], images: [[String]], paddingSide: String
        let inputIDs: [[Int]], attentionMask: [[Int]], crossAttentionMask: [[[[Int]]]], aspectRatioIDs: [[Int]]
        enum CodingKeys: String, CodingKey {
            case name, prompts, images, paddingSide = "padding_side", inputIDs = "input_ids"
            case attentionMask = "attention_mask", crossAttentionMask = "cross_attention_mask"
            case aspectRatioIDs = "aspect_ratio_ids"
        }
    }

    struct ProcessorSection: Decodable {
        let tileSize: Int, maxImageTiles: Int, cases: [ProcessorCase]
        enum CodingKeys: String, CodingKey { case tileSize = "tile_size", maxImageTiles = "max_image_tiles", cases }
    }

    struct Manifest: Decodable {
        let transformers: String
        let imageCases: [String: ImageCase]
        let bigCase: BigCase
        let processor: ProcessorSection
        enum CodingKeys: String, CodingKey {
            case transformers, imageCases = "image_cases", bigCase = "big_case", processor
        }
    }

    static let directory = "mllama-processor"
    static let manifest: Manifest = try! JSONDecoder().decode(
        Manifest.self, from: Data(contentsOf: Fixtures.url("\(directory)/manifest.json")))

    /// `images/…` are the shared photographs, `media/…` the Media fixtures.
    static func imagePath(_ name: String) -> String {
        name.hasPrefix("images/") ? Fixtures.sharedReference(name).path
            : Fixtures.url("media/" + name.dropFirst("media/".count)).path
    }

    static func images(_ samples: [[String]]) throws -> [[Image]] {
        try samples.map { try $0.map { try loadImage(path: imagePath($0)) } }
    }

    /// The published Llama 3.2 Vision preprocessor_config.json with a small tile.
    static func config(tileSize: Int, maxImageTiles: Int) -> MllamaImageProcessorConfig {
        MllamaImageProcessorConfig(size: .init(height: tileSize, width: tileSize), resample: 2,
                                   imageMean: [0.48145466, 0.4578275, 0.40821073],
                                   imageStd: [0.26862954, 0.26130258, 0.27577711], maxImageTiles: maxImageTiles)
    }
}

/// CRC-32 (IEEE, as zlib's `crc32`).
func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var table = [UInt32](repeating: 0, count: 256)
    for i in 0 ..< 256 {
        var c = UInt32(i)
        for _ in 0 ..< 8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        table[i] = c
    }
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
    return crc ^ 0xFFFF_FFFF
}

final class ImageProcessorParityTests: XCTestCase {
    /// Skips, naming what is missing, when the shared reference material is absent.
    override func setUpWithError() throws {
        guard Fixtures.hasSharedReference("images") else { throw XCTSkip(Fixtures.sharedReferenceNote("images")) }
    }

    /// Every fixture case — photographs, grey, palette, RGBA, grey+alpha, JPEGs (one EXIF-rotated),
    /// upscaled and downscaled, a two-sample batch padded in images and tiles — gives the same
    /// aspect_ratio_ids, aspect_ratio_mask and num_tiles as transformers 4.45.2, and the same float32
    /// pixel values bit for bit.
    func testPixelValuesMatchTransformersBitForBit() throws {
        let stored = try SafetensorsFile(url: Fixtures.url("\(ProcessorFixtures.directory)/images.safetensors"))
        XCTAssertEqual(ProcessorFixtures.manifest.transformers, "4.45.2")
        var worstMax = 0.0
        for (name, fixture) in ProcessorFixtures.manifest.imageCases.sorted(by: { $0.key < $1.key }) {
            let processor = try MllamaImageProcessor(
                config: ProcessorFixtures.config(tileSize: fixture.tileSize, maxImageTiles: fixture.maxImageTiles))
            let batch = try processor.preprocess(ProcessorFixtures.images(fixture.images))
            let expectedPixels = try stored.tensor("\(name).pixel_values")
            XCTAssertEqual(batch.pixelValues.shape, expectedPixels.shape, name)
            XCTAssertEqual(batch.numTiles, fixture.numTiles, name)
            XCTAssertEqual(batch.aspectRatioIDs.integers(), try stored.tensor("\(name).aspect_ratio_ids").integers(), name)
            XCTAssertEqual(batch.aspectRatioIDs.shape, try stored.tensor("\(name).aspect_ratio_ids").shape, name)
            XCTAssertEqual(batch.aspectRatioMask.integers(), try stored.tensor("\(name).aspect_ratio_mask").integers(), name)
            XCTAssertEqual(batch.aspectRatioMask.shape, try stored.tensor("\(name).aspect_ratio_mask").shape, name)
            guard batch.pixelValues.shape == expectedPixels.shape else { continue }
            let (actual, expected) = (batch.pixelValues.doubles(), expectedPixels.doubles())
            var maxAbs = 0.0, sumAbs = 0.0, differing = 0
            for (a, e) in zip(actual, expected) {
                let d = abs(a - e)
                maxAbs = max(maxAbs, d)
                sumAbs += d
                if d != 0 { differing += 1 }
            }
            worstMax = max(worstMax, maxAbs)
            XCTAssertLessThanOrEqual(maxAbs, 0.05, "\(name): max abs diff")
            XCTAssertLessThanOrEqual(sumAbs / Double(actual.count), 1e-3, "\(name): mean abs diff")
            XCTAssertEqual(differing, 0, "\(name): \(differing) of \(actual.count) values differ (max \(maxAbs))")
        }
        XCTAssertEqual(worstMax, 0)
    }

    /// The one full-size case (coffee.png 600×400, 560-pixel tiles, up to 4): the float32 bytes'
    /// CRC-32 equals transformers'. The image fits a 1×2 canvas without resizing, so this checks
    /// the canvas choice, padding and normalisation at the published size.
    func testFullSizeTileMatchesTransformersChecksum() throws {
        let big = ProcessorFixtures.manifest.bigCase
        let processor = try MllamaImageProcessor(
            config: ProcessorFixtures.config(tileSize: big.tileSize, maxImageTiles: big.maxImageTiles))
        let batch = try processor.preprocess(ProcessorFixtures.images(big.images))
        XCTAssertEqual(batch.pixelValues.shape, big.shape)
        XCTAssertEqual(batch.aspectRatioIDs.integers(), big.aspectRatioIDs.flatMap { $0 })
        XCTAssertEqual(batch.numTiles, big.numTiles)
        let values = batch.pixelValues.contiguous()
        let checksum = crc32(UnsafeRawBufferPointer(start: values.rawPointer, count: values.elementCount * 4))
        XCTAssertEqual(checksum, big.crc32)
        let doubles = values.doubles()
        XCTAssertEqual(doubles.reduce(0, +), big.sum, accuracy: 1e-3)
        XCTAssertEqual(doubles.reduce(0) { $0 + abs($1) }, big.absSum, accuracy: 1e-3)
    }

    /// transformers' list for 4 tiles, `(rows, columns)` with rows outer:
    /// (1,1) (1,2) (1,3) (1,4) (2,1) (2,2) (3,1) (4,1) — ids 1…8.
    func testSupportedArrangementsAreListedInTransformersOrder() {
        XCTAssertEqual(TileArrangement.all(maxTiles: 4).map { [$0.rows, $0.columns] },
                       [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]])
        XCTAssertEqual(TileArrangement.all(maxTiles: 1).map { [$0.rows, $0.columns] }, [[1, 1]])
    }

    /// Worked choices with 560-pixel tiles and 4 tiles:
    /// - 600×400 (w×h): 1×2 scales by min(560/400, 1120/600) = 1.4 vs min(1.4, 0.93) … the smallest
    ///   scale ≥ 1 is 1.4 (1×2 and 1×3, 1×4 also give 1.4; 1×2 has the least area).
    /// - 100×100: every canvas scales ≥ 5.6; 1×1 gives 5.6, the least.
    /// - 3000×2000: no scale ≥ 1; the largest below is 2×2's min(1120/2000, 1120/3000) = 0.373,
    ///   tied by nothing else.
    func testOptimalArrangementFollowsTransformersRule() {
        XCTAssertEqual(TileArrangement.optimal(height: 400, width: 600, maxTiles: 4, tileSize: 560), .init(rows: 1, columns: 2))
        XCTAssertEqual(TileArrangement.optimal(height: 100, width: 100, maxTiles: 4, tileSize: 560), .init(rows: 1, columns: 1))
        XCTAssertEqual(TileArrangement.optimal(height: 2000, width: 3000, maxTiles: 4, tileSize: 560), .init(rows: 2, columns: 2))
        // Fit to a 560×1120 canvas: width clamped to [560, 1120] stays 600, height to [560, 560] is
        // 560; scale_w = 1 < scale_h = 1.4, so the width stays and the height is floor(400·1) = 400.
        let size = _sizeFittingCanvas(height: 400, width: 600, canvasHeight: 560, canvasWidth: 1120, tileSize: 560)
        XCTAssertEqual(size.height, 400)
        XCTAssertEqual(size.width, 600)
    }

    /// Pillow's bilinear filter on a 4-pixel row halved: scale 2, support 2, centres 1 and 3; the
    /// taps of output 0 are inputs 0…2 with weights 0.75/0.25 … normalised: (1 - |j - 1 + 0.5|/2)
    /// = 0.75, 0.75, 0.25 → /1.75. For samples 0, 100, 200, 255: (0·0.75 + 100·0.75 + 200·0.25)/1.75
    /// = 71.43 → 71; output 1 takes inputs 1…3: (100·0.25 + 200·0.75 + 255·0.75)/1.75 = 209.3 → 209.
    func testBilinearDownscaleOfARowMatchesPillowsArithmetic() {
        let row = Image(width: 4, height: 1, layout: .rgb, pixels: [0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255])
        let half = resizedLikePillow(row, width: 2, height: 1, filter: .bilinear)
        XCTAssertEqual(half.pixels, [71, 71, 71, 209, 209, 209])
    }
}
