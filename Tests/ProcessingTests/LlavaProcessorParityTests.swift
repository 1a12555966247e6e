import Checkpoint
import Foundation
import Media
@testable import Processing
import TensorCore
import Testing
import Tokenization
import _TestSupport

/// The fixtures written by `Scripts/fixtures/make_llava_fixtures.py` with transformers 5.24's PIL
/// backend (`CLIPImageProcessorPil`, `LlavaImageProcessorPil`, `LlavaProcessor`).
private enum LlavaProcessorFixtures {
    struct ImageCase: Decodable { let config: [String: JSONValue]; let images: [String] }
    struct ProcessorCase: Decodable {
        let name: String, prompts: [String], images: [[String]], inputIDs: [[Int]], attentionMask: [[Int]]
        enum CodingKeys: String, CodingKey {
            case name, prompts, images, inputIDs = "input_ids", attentionMask = "attention_mask"
        }
    }
    struct ProcessorSection: Decodable {
        let patchSize: Int, numAdditionalImageTokens: Int, visionFeatureSelectStrategy: String, imageTokenID: Int, padTokenID: Int
        enum CodingKeys: String, CodingKey {
            case patchSize = "patch_size", numAdditionalImageTokens = "num_additional_image_tokens"
            case visionFeatureSelectStrategy = "vision_feature_select_strategy", imageTokenID = "image_token_id"
            case padTokenID = "pad_token_id"
        }
    }
    struct Manifest: Decodable {
        let imageCases: [String: ImageCase]
        let processorCases: [ProcessorCase]
        let processor: ProcessorSection
        enum CodingKeys: String, CodingKey { case imageCases = "image_cases", processorCases = "processor_cases", processor }
    }

    /// Any JSON value, to re-encode a case's preprocessor config for ``CLIPImageProcessorConfig``.
    enum JSONValue: Codable {
        case number(Double), bool(Bool), list([JSONValue]), object([String: JSONValue])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) { self = .bool(b) }
            else if let n = try? c.decode(Double.self) { self = .number(n) }
            else if let l = try? c.decode([JSONValue].self) { self = .list(l) }
            else { self = .object(try c.decode([String: JSONValue].self)) }
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .number(let n): n == n.rounded() && abs(n) < 1e9 ? try c.encode(Int(n)) : try c.encode(n)
            case .bool(let b): try c.encode(b)
            case .list(let l): try c.encode(l)
            case .object(let o): try c.encode(o)
            }
        }
    }

    static let manifest: Manifest = try! JSONDecoder().decode(
        Manifest.self, from: Data(contentsOf: Fixtures.url("llava-processor/manifest.json")))
    static let tensors = try! SafetensorsFile(path: Fixtures.url("llava-processor/images.safetensors").path)

    static func config(_ values: [String: JSONValue]) throws -> CLIPImageProcessorConfig {
        try JSONDecoder().decode(CLIPImageProcessorConfig.self, from: JSONEncoder().encode(values))
    }

    static func image(_ name: String) throws -> Image { try loadImage(path: Fixtures.sharedReference("images/\(name)").path) }
}

extension Trait where Self == ConditionTrait {
    static var needsSharedImages: Self {
        .enabled(if: Fixtures.hasSharedReference("images"), Comment(rawValue: Fixtures.sharedReferenceNote("images")))
    }
}

@Suite("CLIP / LLaVA image processor parity with transformers", .needsSharedImages)
struct CLIPImageProcessorParityTests {
    static let cases: [String] = LlavaProcessorFixtures.manifest.imageCases.keys.sorted()

    /// Resizing is Pillow's own arithmetic (8-bit, fixed point), so the pixel values are equal, not close.
    @Test("pixel values equal transformers' on the shared photographs (RGB, grey, palette, RGBA; pad, crop, filters)",
          arguments: cases)
    func pixelValues(name: String) throws {
        let entry = LlavaProcessorFixtures.manifest.imageCases[name]!
        let processor = try CLIPImageProcessor(config: LlavaProcessorFixtures.config(entry.config))
        let pixels = try processor.preprocess(entry.images.map(LlavaProcessorFixtures.image))
        let expected = try LlavaProcessorFixtures.tensors.tensor("\(name).pixel_values")
        #expect(pixels.shape == expected.shape)
        #expect(pixels.floats() == expected.floats(), "max abs \(errors(pixels.doubles(), expected.doubles()).maxAbs)")
    }

    @Test("pad-to-square uses int(mean·255) and centres the image with a floored offset")
    func padToSquare() throws {
        let processor = try CLIPImageProcessor(config: CLIPImageProcessorConfig(doPad: true))
        let image = Image(width: 1, height: 4, layout: .rgb, pixels: Array(repeating: 7, count: 12))
        let padded = processor.paddedToSquare(image)
        #expect(padded.width == 4 && padded.height == 4)
        // mean 0.48145466·255 = 122.77 → 122; column (4 − 1) / 2 = 1 holds the image.
        #expect(Array(padded.pixels[0..<3]) == [122, 116, 104])
        #expect(Array(padded.pixels[3..<6]) == [7, 7, 7])
    }
}

@Suite("LlavaProcessor parity with transformers", .needsSharedImages,
       .enabled(if: Fixtures.hasSharedReference("llama3-tokenizer/tokenizer.json.zst"),
                Comment(rawValue: Fixtures.sharedReferenceNote("llama3-tokenizer/tokenizer.json.zst"))))
struct LlavaProcessorParityTests {
    static func processor() throws -> LlavaProcessor {
        let manifest = LlavaProcessorFixtures.manifest
        let bytes = try Zstd.decompress(contentsOf: Fixtures.sharedReference("llama3-tokenizer/tokenizer.json.zst"))
        let tokenizer = try Tokenizer(huggingFaceJSON: bytes, source: "tokenizer.json",
                                      extraSpecialTokens: ["<image>": manifest.processor.imageTokenID])
        let section = manifest.processor
        let images = try CLIPImageProcessor(config: LlavaProcessorFixtures.config(
            manifest.imageCases["llava_pad_42"]!.config))
        return try LlavaProcessor(imageProcessor: images, tokenizer: tokenizer, patchSize: section.patchSize,
                                  numAdditionalImageTokens: section.numAdditionalImageTokens,
                                  visionFeatureSelectStrategy: section.visionFeatureSelectStrategy, padTokenID: section.padTokenID)
    }

    @Test("input ids (each <image> expanded), attention mask and pixel values equal LlavaProcessor's",
          arguments: LlavaProcessorFixtures.manifest.processorCases.map(\.name))
    func processorCase(name: String) throws {
        let entry = LlavaProcessorFixtures.manifest.processorCases.first { $0.name == name }!
        let processor = try Self.processor()
        let batch = try processor.process(prompts: entry.prompts, images: entry.images.map { try $0.map(LlavaProcessorFixtures.image) })
        #expect(batch.inputIDs.integers() == entry.inputIDs.flatMap { $0 })
        #expect(batch.attentionMask.integers() == entry.attentionMask.flatMap { $0 })
        let expected = try LlavaProcessorFixtures.tensors.tensor("\(name).pixel_values")
        #expect(batch.pixelValues?.floats() == expected.floats())
        // 42-pixel crops with 14-pixel patches: 9 patches + the class token − 1 (default strategy).
        #expect(processor.imageTokenCount(height: 42, width: 42) == 9)
    }

    @Test("a prompt whose <image> count differs from its images is an error naming the sample")
    func imageCountMismatch() throws {
        let processor = try Self.processor()
        let photo = try LlavaProcessorFixtures.image("coffee.png")
        #expect { try processor.process(prompts: ["a", "<image> b"], images: [[], [photo, photo]]) } throws: { error in
            "\(error)".contains("sample 1") && "\(error)".contains("1 <image> token but 2 images")
        }
    }
}
