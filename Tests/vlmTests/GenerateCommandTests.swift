import ArgumentParser
import Checkpoint
import Layers
import Foundation
import Models
import Testing
import TensorCore
@testable import Tokenization
import _TestSupport
@testable import vlm
#if canImport(Glibc)
import Glibc
#endif

@Suite("vlm generate: messages instead of crashes or silence")
struct GenerateInputTests {
    @Test("A tokenizer whose ids exceed the model's vocabulary is an error, not a crash", .enabled(if: hasSharedTokenizer, sharedNote))
    func idsPastVocabulary() {
        let result = failure(["generate", "--model", llamaFixture.path, "--tokenizer", sharedTokenizer.path, "--prompt", "hi"])
        #expect(result?.status == 1 && result?.message.contains("outside the model's vocabulary of 256") == true, "\(String(describing: result))")
    }

    @Test("--chat on a Llama 3.1 text model does not ask for <|image|>", .enabled(if: hasSharedTokenizer, sharedNote))
    func chatOnTextModel() {
        let result = failure(["generate", "--model", llamaFixture.path, "--tokenizer", sharedTokenizer.path, "--chat", "--prompt", "Hello"])
        #expect(result?.message.contains("<|image|>") == false, "\(String(describing: result))")
        #expect(result?.message.contains("vocabulary") == true, "the tiny model's only complaint is its vocabulary: \(String(describing: result))")
    }

    @Test("a standard output that cannot be written (a full disk) is an error naming it, exit 1, not a crash or silence")
    func fullStandardOutput() throws {
        let binary = builtVLM
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the release binary first (swift build -c release)")
        let scratch = try Scratch()
        let model = scratch.url.appendingPathComponent("llama")
        try copyFixture("llama/gqa2_untied_padded", to: model)
        try writeByteTokenizer(to: model.appendingPathComponent("tokenizer.json"))
        var device = stat()
        try #require(stat("/dev/full", &device) == 0 && (device.st_mode & S_IFMT) == S_IFCHR, "/dev/full is not the full device here")
        // generate streams through a file handle; inspect prints, which is flushed at exit.
        for arguments in [["generate", "--model", model.path, "--prompt", "hi", "--max-tokens", "8"], ["inspect", model.path]] {
            let process = Process()
            process.executableURL = binary
            process.arguments = arguments
            process.standardOutput = try #require(FileHandle(forWritingAtPath: "/dev/full"))
            let errors = Pipe()
            process.standardError = errors
            try process.run()
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationReason == .exit && process.terminationStatus == 1, "\(arguments[0]): \(process.terminationStatus): \(message)")
            #expect(message.contains("cannot write to standard output"), "\(arguments[0]): \(message)")
        }
    }

    @Test("Bad numbers, <|image|> without --image and over-long prompts are refused; a huge --max-tokens stops at the maximum length")
    func refusedInputs() throws {
        let scratch = try Scratch()
        let model = scratch.url.appendingPathComponent("llama")
        try copyFixture("llama/gqa2_untied_padded", to: model)
        try writeByteTokenizer(to: model.appendingPathComponent("tokenizer.json"))
        let base = ["generate", "--model", model.path]

        let topK = failure(base + ["--prompt", "hi", "--top-k=-5"])
        #expect(topK?.status == 64 && topK?.message.contains("--top-k") == true, "\(String(describing: topK))")
        let maxTokens = failure(base + ["--prompt", "hi", "--max-tokens", "-3"])
        #expect(maxTokens?.status == 64 && maxTokens?.message.contains("--max-tokens must be positive") == true, "\(String(describing: maxTokens))")
        let image = failure(base + ["--prompt", "<|image|>What is this?"])
        #expect(image?.status == 1 && image?.message.contains("no --image") == true, "\(String(describing: image))")
        let long = failure(base + ["--prompt", String(repeating: "x ", count: 200)])
        #expect(long?.status == 1 && long?.message.contains("at most 256") == true, "\(String(describing: long))")

        // 250 single-byte tokens + BOS leave 5 positions: a billion new tokens must not be allocated up front.
        try runVLM(base + ["--prompt", String(repeating: "x", count: 250), "--max-tokens", "1000000000", "--temperature", "1", "--seed", "3"])
    }
}

@Suite("vlm generate with images")
struct GenerateImageTests {
    @Test("A preprocessor_config.json whose tiles do not fit the model is an error naming it; a matching one generates")
    func processorMustFitModel() throws {
        let scratch = try Scratch()
        let model = scratch.url.appendingPathComponent("mllama")
        try copyFixture("mllama/tiny_single_image_56", to: model)
        // ASCII keeps its ids (below the 128-token vocabulary); 128 is <|image|>.
        try writeByteTokenizer(to: model.appendingPathComponent("tokenizer.json"), specials: ["<|begin_of_text|>": 129], skipping: [128])
        let processor = model.appendingPathComponent("preprocessor_config.json")
        try FileManager.default.copyItem(at: Fixtures.url("mllama/processor/preprocessor_config_560.json"), to: processor)
        let arguments = ["generate", "--model", model.path, "--image", Fixtures.url("mllama/processor/coffee_crop_120x50.png").path,
                         "--prompt", "hi", "--max-tokens", "2"]
        let mismatch = failure(arguments)
        #expect(mismatch?.status == 1 && mismatch?.message.contains("preprocessor_config.json") == true
                && mismatch?.message.contains("pixel_values must be") == true, "\(String(describing: mismatch))")
        try FileManager.default.removeItem(at: processor)
        try FileManager.default.copyItem(at: Fixtures.url("mllama/processor/preprocessor_config.json"), to: processor)
        try runVLM(arguments)
    }
}

@Suite("vlm generate streams every byte")
struct GenerateStreamingTests {
    @Test("Sampled text from a model with the real Llama 3 vocabulary streams byte-for-byte what decoding it at once gives",
          .enabled(if: hasSharedTokenizer, sharedNote))
    func streamedEqualsDecoded() throws {
        let tokenizer = try Tokenizer(contentsOf: sharedTokenizer)
        let config = LlamaConfig(vocabSize: tokenizer.vocabularySize, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 1,
                                 numAttentionHeads: 2, maxPositionEmbeddings: 1024, bosTokenId: 128_000, eosTokenIds: [128_001])
        let model = LlamaForCausalLM(config: config, factory: ParameterFactory(.random(seed: 7, standardDeviation: 1.0)))
        let prompt = [128_000] + tokenizer.encode("नमस्ते दुनिया, สวัสดีชาวโลก")
        var streamed: [UInt8] = [], writes: [[UInt8]] = []
        let produced = streamGeneration(model, prompt: prompt, tokenizer: tokenizer, stop: [], pad: 0,
                                        options: SamplingOptions(temperature: 1, seed: 11), maxNewTokens: 600) {
            writes.append($0)
            streamed += $0
        }
        #expect(produced.count == 600)
        let full = Array(tokenizer.decode(produced).utf8)
        #expect(streamed.count == full.count, "streamed \(streamed.count) of \(full.count) bytes")
        #expect(streamed == full)
        #expect(writes.allSatisfy { String(validating: $0, as: UTF8.self) != nil })
        // The sample holds tokens that are pieces of characters, so the test exercises holding back.
        #expect(produced.contains { tokenizer.decode([$0]).unicodeScalars.contains("\u{FFFD}") })
    }
}
