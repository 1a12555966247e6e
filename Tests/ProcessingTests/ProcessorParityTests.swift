import Checkpoint
import Foundation
import Media
import Processing
import TensorCore
import Tokenization
import XCTest
import _TestSupport

final class ProcessorParityTests: XCTestCase {
    /// Skips, naming what is missing, when the shared reference material is absent.
    override func setUpWithError() throws {
        guard Fixtures.hasSharedReference("llama3-tokenizer/tokenizer.json.zst") else { throw XCTSkip(Fixtures.sharedReferenceNote("llama3-tokenizer/tokenizer.json.zst")) }
        guard Fixtures.hasSharedReference("images") else { throw XCTSkip(Fixtures.sharedReferenceNote("images")) }
    }

    /// The shared Llama 3 `tokenizer.json` with the post-processor Llama 3.2 Vision's file has
    /// (prepend `<|begin_of_text|>`), as the fixture script built transformers' tokenizer.
    static let tokenizer: Tokenizer = {
        let bytes = try! Zstd.decompress(contentsOf: Fixtures.sharedReference("llama3-tokenizer/tokenizer.json.zst"))
        var root = try! JSONSerialization.jsonObject(with: Data(bytes)) as! [String: Any]
        root["post_processor"] = [
            "type": "Sequence",
            "processors": [
                ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
                ["type": "TemplateProcessing",
                 "single": [["SpecialToken": ["id": "<|begin_of_text|>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                 "pair": [] as [Any],
                 "special_tokens": ["<|begin_of_text|>": ["id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]]]],
            ] as [Any],
        ]
        let json = [UInt8](try! JSONSerialization.data(withJSONObject: root))
        return try! Tokenizer(huggingFaceJSON: json, source: "tokenizer.json", extraSpecialTokens: ["<|image|>": 128256])
    }()

    static func processor(paddingSide: MllamaProcessor.PaddingSide = .right) throws -> MllamaProcessor {
        let section = ProcessorFixtures.manifest.processor
        let images = try MllamaImageProcessor(
            config: ProcessorFixtures.config(tileSize: section.tileSize, maxImageTiles: section.maxImageTiles))
        return try MllamaProcessor(imageProcessor: images, tokenizer: tokenizer, paddingSide: paddingSide)
    }

    /// Every processor case — one image, text before the first image, consecutive image tokens then
    /// a third, a prompt that already has `<|begin_of_text|>`, leading images, and a two-sample batch
    /// padded right and left — gives transformers 4.45.2's input_ids, attention_mask and
    /// cross_attention_mask exactly.
    func testInputIDsAndMasksMatchTransformers() throws {
        for fixture in ProcessorFixtures.manifest.processor.cases {
            let processor = try Self.processor(paddingSide: fixture.paddingSide == "left" ? .left : .right)
            let batch = try processor.process(prompts: fixture.prompts, images: ProcessorFixtures.images(fixture.images))
            let b = fixture.inputIDs.count, t = fixture.inputIDs[0].count
            XCTAssertEqual(batch.inputIDs.shape, [b, t], fixture.name)
            XCTAssertEqual(batch.inputIDs.integers(), fixture.inputIDs.flatMap { $0 }, fixture.name)
            XCTAssertEqual(batch.attentionMask.integers(), fixture.attentionMask.flatMap { $0 }, fixture.name)
            let n = fixture.crossAttentionMask[0][0].count, g = fixture.crossAttentionMask[0][0][0].count
            XCTAssertEqual(batch.crossAttentionMask?.shape, [b, t, n, g], fixture.name)
            XCTAssertEqual(batch.crossAttentionMask?.integers(),
                           fixture.crossAttentionMask.flatMap { $0.flatMap { $0.flatMap { $0 } } }, fixture.name)
            XCTAssertEqual(batch.images?.aspectRatioIDs.integers(), fixture.aspectRatioIDs.flatMap { $0 }, fixture.name)
        }
    }

    /// `[I, I, a, b, I, c]`: the first image's range is only its own token, so it takes the second's
    /// end (the next image at 4): both see 0..<4; the last runs to the end.
    /// `[a, I, b, I, I]`: 1..<3, then the consecutive pair at 3, 4 both run to 5.
    func testCrossAttentionRangesFollowTheReferenceRules() {
        let i = 9
        XCTAssertEqual(MllamaProcessor.crossAttentionRanges(tokenIDs: [i, i, 1, 2, i, 3], imageTokenID: i), [0 ..< 4, 1 ..< 4, 4 ..< 6])
        XCTAssertEqual(MllamaProcessor.crossAttentionRanges(tokenIDs: [1, i, 2, i, i], imageTokenID: i), [1 ..< 3, 3 ..< 5, 4 ..< 5])
        XCTAssertEqual(MllamaProcessor.crossAttentionRanges(tokenIDs: [1, 2], imageTokenID: i), [])
        XCTAssertEqual(MllamaProcessor.crossAttentionRanges(tokenIDs: [1, i, 2], imageTokenID: i), [1 ..< 3])
    }

    /// transformers' `build_string_from_input`: BOS after the leading image tokens, none added when present.
    func testBeginOfTextIsPlacedAfterLeadingImages() throws {
        let processor = try Self.processor()
        XCTAssertEqual(processor.promptWithBeginOfText("<|image|><|image|>Hi"), "<|image|><|image|><|begin_of_text|>Hi")
        XCTAssertEqual(processor.promptWithBeginOfText("Hi <|image|>"), "<|begin_of_text|>Hi <|image|>")
        XCTAssertEqual(processor.promptWithBeginOfText("<|image|><|begin_of_text|>Hi"), "<|image|><|begin_of_text|>Hi")
    }

    /// A text-only batch has ids and an attention mask but no image inputs.
    func testPromptsWithoutImagesGiveNoImageInputs() throws {
        let batch = try Self.processor().process(prompts: ["Hello", "Hello there, friend"], images: [])
        XCTAssertNil(batch.crossAttentionMask)
        XCTAssertNil(batch.images)
        XCTAssertEqual(batch.inputIDs.shape[0], 2)
        XCTAssertEqual(batch.tokenIDs[0].first, 128000)
    }
}

final class ProcessingErrorTests: XCTestCase {
    /// Skips, naming what is missing, when the shared reference material is absent.
    override func setUpWithError() throws {
        guard Fixtures.hasSharedReference("llama3-tokenizer/tokenizer.json.zst") else { throw XCTSkip(Fixtures.sharedReferenceNote("llama3-tokenizer/tokenizer.json.zst")) }
        guard Fixtures.hasSharedReference("images") else { throw XCTSkip(Fixtures.sharedReferenceNote("images")) }
    }

    func testImageCountMismatchNamesTheSample() throws {
        let processor = try ProcessorParityTests.processor()
        let image = Image(width: 2, height: 2, layout: .rgb, pixels: [UInt8](repeating: 9, count: 12))
        XCTAssertThrowsError(try processor.process(prompts: ["<|image|>a", "<|image|><|image|>b"], images: [[image], [image]])) {
            XCTAssertEqual("\($0)", "sample 1: the prompt has 2 <|image|> tokens but 1 image was given")
        }
        XCTAssertThrowsError(try processor.process(prompts: ["a"], images: [[image]])) {
            XCTAssertEqual("\($0)", "the prompt has 0 <|image|> tokens but 1 image was given", "one prompt: no sample number")
        }
        XCTAssertThrowsError(try processor.process(prompts: ["<|image|>a", "b"], images: [[image]])) {
            XCTAssertTrue("\($0)".contains("2 prompts but 1 lists of images"), "\($0)")
        }
        XCTAssertThrowsError(try processor.process(prompts: ["<|image|>a", "b"], images: [[image], []])) {
            XCTAssertTrue("\($0)".hasPrefix("sample 1: no images"), "\($0)")
        }
    }

    func testBrokenImageFileNamesTheFile() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-broken-\(UUID().uuidString).png")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: ProcessorFixtures.imagePath("images/coffee_palette_64.png")))
        bytes = bytes.prefix(bytes.count / 2)
        try bytes.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertThrowsError(try loadImage(path: url.path)) { XCTAssertTrue("\($0)".hasPrefix(url.path + ": "), "\($0)") }
    }

    func testBadConfigurationNamesTheField() throws {
        func decode(_ json: String) throws -> MllamaImageProcessorConfig {
            try MllamaImageProcessorConfig.decode(Data(json.utf8), file: "preprocessor_config.json")
        }
        XCTAssertThrowsError(try decode(#"{"size": {"shortest_edge": 560}}"#)) {
            XCTAssertTrue("\($0)".hasPrefix("preprocessor_config.json: ") && "\($0)".contains("size"), "\($0)")
        }
        XCTAssertThrowsError(try decode(#"{"image_mean": [0.5, 0.5]}"#)) {
            XCTAssertTrue("\($0)".contains("image_mean"), "\($0)")
        }
        XCTAssertThrowsError(try decode(#"{"size": {"height": 560}}"#)) {
            XCTAssertTrue("\($0)".contains("size"), "\($0)")
        }
        let rectangle = MllamaImageProcessorConfig(size: .init(height: 560, width: 448))
        XCTAssertThrowsError(try MllamaImageProcessor(config: rectangle)) { XCTAssertTrue("\($0)".contains("size"), "\($0)") }
        XCTAssertThrowsError(try MllamaImageProcessor(config: .init(doPad: false))) { XCTAssertTrue("\($0)".contains("do_pad"), "\($0)") }
        XCTAssertThrowsError(try MllamaImageProcessor(config: .init(resample: 0))) { XCTAssertTrue("\($0)".contains("resample"), "\($0)") }
        XCTAssertThrowsError(try MllamaImageProcessor(config: .init(maxImageTiles: 0))) {
            XCTAssertTrue("\($0)".contains("max_image_tiles"), "\($0)")
        }
    }

    func testAlphaWithoutRGBConversionNamesTheImage() throws {
        let processor = try MllamaImageProcessor(config: .init(doConvertRgb: false))
        let rgba = Image(width: 1, height: 1, layout: .rgba, pixels: [1, 2, 3, 4])
        let rgb = Image(width: 1, height: 1, layout: .rgb, pixels: [1, 2, 3])
        XCTAssertThrowsError(try processor.preprocess([[rgb, rgba]])) {
            XCTAssertTrue("\($0)".hasPrefix("image 1: "), "one sample: no sample number; \($0)")
        }
    }
}
