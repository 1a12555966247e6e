import Checkpoint
import Foundation
import Processing
import Testing
import Tokenization
import _TestSupport
@testable import Training

/// The label layouts with Llama 3's own tokenizer (`../shared/reference/llama3-tokenizer`); skipped
/// when the shared reference files are absent.
@Suite struct DataRealTokenizerTests {
    static let tokenizer: Tokenizer? = {
        let url = Fixtures.sharedReference("llama3-tokenizer/tokenizer.json.zst")
        guard FileManager.default.fileExists(atPath: url.path), let bytes = try? Zstd.decompress(contentsOf: url) else { return nil }
        return try? Tokenizer(huggingFaceJSON: bytes, source: "tokenizer.json", extraSpecialTokens: ["<|image|>": 128256])
    }()

    @Test(.enabled(if: tokenizer != nil, "needs ../shared/reference/llama3-tokenizer"))
    func pretrainingAndSftMasksWithTheLlama3Tokenizer() throws {
        let tokenizer = try #require(Self.tokenizer)
        let processor = try MllamaProcessor(imageProcessor: MllamaImageProcessor(config: .init(size: .init(height: 16, width: 16), maxImageTiles: 1)),
                                            tokenizer: tokenizer)
        let encoder = try SampleEncoder(processor: processor, maxLength: 256, maxImages: 1)
        let image = ImageSource.file(URL(fileURLWithPath: "/a.png"))
        let location = RecordLocation(file: "t", line: 1)

        let caption = try encoder.encode(DatasetRecord(id: "p", location: location, images: [image], content: .caption("A red circle.")))
        let prompt = processor.tokenIDs(for: "<|image|>")
        // The shared tokenizer.json adds no BOS of its own; the processor puts one after the image.
        #expect(prompt == [128256, 128000])
        #expect(caption.tokenIDs == processor.tokenIDs(for: "<|image|>A red circle.<|end_of_text|>"))
        let learned = caption.labels.filter { $0 != SampleEncoder.ignoreIndex }
        #expect(tokenizer.decode(learned) == "A red circle.<|end_of_text|>")
        #expect(caption.labels.prefix(prompt.count).allSatisfy { $0 == SampleEncoder.ignoreIndex })

        let question = try encoder.encode(DatasetRecord(id: "q", location: location, images: [image],
                                                        content: .question(prompt: "What colour is it?", answer: "Red", kind: nil)))
        #expect(tokenizer.decode(question.labels.filter { $0 != SampleEncoder.ignoreIndex }) == "Red<|eot_id|>")
        #expect(tokenizer.decode(question.tokenIDs) == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|>What colour is it?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nRed<|eot_id|>")
    }
}
