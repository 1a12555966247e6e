import Checkpoint
import Layers
import Foundation
import Models
import Testing
import TensorCore
import Tokenization
import _TestSupport
@testable import vlm

private let sharedTokenizerJSON = Fixtures.sharedReference("llama3-tokenizer/tokenizer.json.zst")

/// `vlm adapters init` on a Llama with the real 128256-token vocabulary writes a checkpoint that the
/// other commands (and transformers: `Scripts/fixtures/check_vision_checkpoint_in_transformers.py`)
/// use as it is.
@Suite("vlm adapters init writes a complete vision checkpoint",
       .enabled(if: FileManager.default.fileExists(atPath: sharedTokenizerJSON.path),
                "needs ../shared/reference/llama3-tokenizer/tokenizer.json.zst (the shared reference material beside the clone)"))
struct VisionCheckpointCommandTests {
    /// A random 2-layer Llama of width 16 with the Llama 3 vocabulary and the shared tokenizer
    /// (compressed, as it ships), in a new folder.
    static func textModel() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vlm-vision-text-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let config = LlamaConfig(vocabSize: 128_256, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 2, numAttentionHeads: 2,
                                 numKeyValueHeads: 1, bosTokenId: 128_000, eosTokenIds: [128_001, 128_009])
        let model = LlamaForCausalLM(config: config, factory: ParameterFactory(.random(seed: 4, standardDeviation: 0.5)))
        try writeSafetensors(tensors: model.parameters().map { ($0.name, $0.tensor) },
                             to: folder.appendingPathComponent("model.safetensors"))
        try AtomicFile.write(try config.jsonData(), to: folder.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: sharedTokenizerJSON, to: folder.appendingPathComponent("tokenizer.json.zst"))
        return folder
    }

    @Test("the written checkpoint has the tokenizer with <|image|>, and preprocess --chat and generate in both maskings use it")
    func completeCheckpoint() throws {
        let text = try Self.textModel()
        let out = text.deletingLastPathComponent().appendingPathComponent("vlm-vision-out-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: text); try? FileManager.default.removeItem(at: out) }
        var command = try VLM.parseAsRoot(["adapters", "init", "--text-model", text.path, "--out", out.path, "--seed", "1",
                                           "--adapter", Fixtures.repositoryRoot.appendingPathComponent("adapters/tiny.yaml").path])
        try command.run()

        for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.json",
                     "preprocessor_config.json", "generation_config.json", "config.json", "model.safetensors"] {
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(name).path), "\(name)")
        }
        let tokenizer = try loadTokenizer(path: out.appendingPathComponent("tokenizer.json").path, extraSpecialTokens: [:])
        #expect(tokenizer.specialTokenID("<|image|>") == 128_256)
        #expect(tokenizer.encode("Hi", addingSpecialTokens: true) == [13347], "the shared file's convention: no BOS added")

        let image = Fixtures.sharedReference("images/coffee_palette_64.png").path
        let inputs = out.appendingPathComponent("inputs.safetensors")
        command = try VLM.parseAsRoot(["preprocess", "--model", out.path, "--image", image, "--prompt", "What is it?", "--chat",
                                       "--out", inputs.path])
        try command.run()
        let file = try SafetensorsFile(path: inputs.path)
        let chat = try Llama3ChatFormat(tokenizer: tokenizer)
            .encode([ChatMessage(role: .user, parts: [.image, .text("What is it?")])], addGenerationPrompt: true).ids
        #expect(try file.tensor("input_ids").integers() == chat)
        #expect(try file.tensor("cross_attention_mask").shape == [1, chat.count, 1, 4])

        for masking in ["meta", "huggingface"] {
            command = try VLM.parseAsRoot(["generate", "--model", out.path, "--image", image, "--prompt", "Hi", "--max-tokens", "2",
                                           "--cross-attention-masking", masking])
            try command.run()
        }
        #expect(throws: (any Error).self) {
            try VLM.parseAsRoot(["generate", "--model", out.path, "--prompt", "Hi", "--cross-attention-masking", "torch"])
        }
    }

    @Test("a text model without tokenizer.json is refused before anything is written")
    func noTokenizer() throws {
        let text = try Self.textModel()
        let out = text.deletingLastPathComponent().appendingPathComponent("vlm-vision-out-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: text); try? FileManager.default.removeItem(at: out) }
        try FileManager.default.removeItem(at: text.appendingPathComponent("tokenizer.json.zst"))
        var command = try VLM.parseAsRoot(["adapters", "init", "--text-model", text.path, "--out", out.path,
                                           "--adapter", Fixtures.repositoryRoot.appendingPathComponent("adapters/tiny.yaml").path])
        #expect { try command.run() } throws: { "\($0)".contains("has no tokenizer.json or tokenizer.json.zst") }
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }
}
