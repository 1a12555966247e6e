import Checkpoint
import Foundation
import Media
@testable import Processing
import Testing
import Tokenization
import _TestSupport

private let sharedLlama3Tokenizer = Fixtures.sharedReference("llama3-tokenizer/tokenizer.json.zst")

/// The files `VisionCheckpointFiles` writes, checked against what transformers read from the same
/// files: `Tests/Fixtures/vision-checkpoint/expectations.json`, made by
/// `Scripts/fixtures/check_vision_checkpoint_in_transformers.py` from a tiny Llama 3.1 with the
/// shared Llama 3 tokenizer, once as it is (no BOS added) and once with Llama 3.1's BOS template.
@Suite("Vision checkpoint files", .enabled(if: FileManager.default.fileExists(atPath: sharedLlama3Tokenizer.path),
                                           "needs ../shared/reference/llama3-tokenizer/tokenizer.json.zst (the shared reference material beside the clone)"))
struct VisionCheckpointFilesTests {
    static let sharedTokenizer = sharedLlama3Tokenizer

    static let expectations: [String: Any] = {
        let data = try! Data(contentsOf: Fixtures.url("vision-checkpoint/expectations.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    static func variant(_ name: String) -> [String: Any] {
        (expectations["variants"] as! [[String: Any]]).first { $0["name"] as? String == name }!
    }

    /// The mllama config.json `vlm adapters init` wrote in the fixture run (vocabulary 128256).
    static let config: MllamaConfig = {
        let data = try! JSONSerialization.data(withJSONObject: variant("shared")["config"]!)
        return try! MllamaConfig.decode(data, file: "expectations.json config")
    }()

    /// A text model's tokenizer files as the fixture run laid them out for `variant`, in a new folder.
    static func source(_ variant: String) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-vision-files-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let bytes = try Zstd.decompress(contentsOf: sharedTokenizer)
        let expected = Self.variant(variant)
        if variant == "shared" {
            try Data(bytes).write(to: folder.appendingPathComponent("tokenizer.json"))
        } else {
            var tokenizer = try JSONSerialization.jsonObject(with: Data(bytes)) as! [String: Any]
            tokenizer["post_processor"] = expected["post_processor"]
            if let renamed = expected["renamed_added_tokens"] as? [String: String] {
                tokenizer["added_tokens"] = (tokenizer["added_tokens"] as! [[String: Any]]).map { token in
                    var token = token
                    if let name = renamed[String(token["id"] as! Int)] { token["content"] = name }
                    return token
                }
            }
            try JSONSerialization.data(withJSONObject: tokenizer).write(to: folder.appendingPathComponent("tokenizer.json"))
        }
        if let config = expected["source_tokenizer_config"] {
            try JSONSerialization.data(withJSONObject: config).write(to: folder.appendingPathComponent("tokenizer_config.json"))
        }
        try JSONSerialization.data(withJSONObject: expectations["source_generation_config"]!)
            .write(to: folder.appendingPathComponent("generation_config.json"))
        return folder
    }

    /// The fixture run's variants: the shared file as it is, with Llama 3.1's BOS template, and with
    /// the template and Llama 3.1's token names (`<|finetune_right_pad_id|>` among them).
    static let variants = ["shared", "bos-template", "llama-3.1"]

    /// The support files built from each variant's source (built once: the tokenizer is 9 MB of JSON).
    static let built: [String: VisionCheckpointFiles] = {
        var built: [String: VisionCheckpointFiles] = [:]
        for variant in Self.variants {
            let source = try! Self.source(variant)
            defer { try? FileManager.default.removeItem(at: source) }
            built[variant] = try! VisionCheckpointFiles(source: source, config: config)
        }
        return built
    }()

    static func json(_ name: String, of variant: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: built[variant]!.contents[name]!) as! [String: Any]
    }

    /// `variant`'s files written into a new folder.
    static func written(_ variant: String) throws -> URL {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-vision-out-\(UUID().uuidString)")
        try built[variant]!.write(to: output)
        return output
    }

    @Test("tokenizer.json gains <|image|> as a special added token at image_token_index; the post-processor is kept",
          arguments: variants)
    func imageToken(variant: String) throws {
        let tokenizer = try Self.json("tokenizer.json", of: variant)
        let added = tokenizer["added_tokens"] as! [[String: Any]]
        let image = try #require(added.first { $0["content"] as? String == "<|image|>" })
        let transformers = Self.variant(variant)["transformers"] as! [String: Any]
        #expect((image["id"] as! Int) == Self.config.imageTokenIndex)
        #expect((image["id"] as! Int) == transformers["image_token_id"] as! Int)
        #expect(image["special"] as? Bool == true && image["normalized"] as? Bool == false)
        #expect(added.count == 257, "the 256 Llama 3 specials and <|image|>")
        #expect(NSDictionary(dictionary: tokenizer["post_processor"] as! [String: Any])
                == NSDictionary(dictionary: Self.variant(variant)["post_processor"] as! [String: Any]))
        let config = try Self.json("tokenizer_config.json", of: variant)
        let decoder = config["added_tokens_decoder"] as! [String: Any]
        #expect((decoder["128256"] as? [String: Any])?["content"] as? String == "<|image|>")
    }

    @Test("tokenizer_config.json names the special tokens transformers read and carries the vision chat template",
          arguments: variants)
    func tokenizerConfig(variant: String) throws {
        let config = try Self.json("tokenizer_config.json", of: variant)
        let transformers = Self.variant(variant)["transformers"] as! [String: Any]
        #expect(config["bos_token"] as? String == transformers["bos_token"] as? String)
        #expect(config["eos_token"] as? String == transformers["eos_token"] as? String)
        #expect(config["pad_token"] as? String == transformers["pad_token"] as? String,
                "<|finetune_right_pad_id|> where the vocabulary has it (llama-3.1), else none")
        #expect(config["processor_class"] as? String == "MllamaProcessor")
        #expect(config["tokenizer_class"] as? String == "PreTrainedTokenizerFast")
        let published = try String(contentsOf: Fixtures.repositoryRoot.appendingPathComponent("Scripts/fixtures/mllama_chat_template.jinja"),
                                   encoding: .utf8)
        #expect(config["chat_template"] as? String == Llama3ChatFormat.visionChatTemplate)
        #expect(Llama3ChatFormat.visionChatTemplate + "\n" == published)
        #expect(try Self.json("chat_template.json", of: variant)["chat_template"] as? String == Llama3ChatFormat.visionChatTemplate)
        #expect(try Self.json("preprocessor_config.json", of: variant)["processor_class"] as? String == "MllamaProcessor")
        let generation = try Self.json("generation_config.json", of: variant)
        #expect(generation["eos_token_id"] as? [Int] == [128_001, 128_008, 128_009], "the source's end-of-turn ids")
        #expect(generation["temperature"] as? Double == 0.6, "the source's other fields are kept")
        #expect(generation["pad_token_id"] as? Int == transformers["pad_token_id"] as? Int)
    }

    /// transformers' BOS rule, read from the written files: the shared file's ByteLevel
    /// post-processor adds nothing, so `<|image|>Describe…` is `<|image|> BOS Describe…`; with the
    /// Llama 3.1 template the processor's ids start with one more BOS.
    @Test("VLMKit's processor gives transformers' ids and cross-attention masks for both BOS conventions",
          arguments: variants)
    func processorParity(variant: String) throws {
        let output = try Self.written(variant)
        defer { try? FileManager.default.removeItem(at: output) }
        let tokenizer = try Tokenizer(checkpointFile: output.appendingPathComponent("tokenizer.json"))
        #expect(tokenizer.encode("Hello", addingSpecialTokens: true)
                == (Self.variant(variant)["transformers"] as! [String: Any])["ids_of_hello"] as! [Int])
        let imageConfig = try MllamaImageProcessorConfig.load(from: output.appendingPathComponent(MllamaImageProcessorConfig.fileName))
        let processor = try MllamaProcessor(imageProcessor: MllamaImageProcessor(config: imageConfig), tokenizer: tokenizer)
        for fixture in Self.variant(variant)["cases"] as! [[String: Any]] {
            let name = fixture["name"] as! String, prompt = fixture["prompt"] as! String
            let images = try (fixture["images"] as! [String]).map { try loadImage(path: Fixtures.sharedReference($0).path) }
            let ids: [Int]
            if fixture["chat"] as! Bool {
                var parts: [ChatMessage.Part] = prompt.hasPrefix("<|image|>") ? [.image] : []
                parts.append(.text(prompt.replacingOccurrences(of: "<|image|>", with: "")))
                ids = try Llama3ChatFormat(tokenizer: tokenizer).encode([ChatMessage(role: .user, parts: parts)],
                                                                       addGenerationPrompt: true).ids
            } else {
                ids = processor.tokenIDs(for: prompt)
            }
            #expect(ids == fixture["input_ids"] as! [Int], "\(variant) \(name)")
            let batch = try processor.process(tokenIDs: [ids], images: [images])
            if let mask = fixture["cross_attention_mask"] as? [[[Int]]] {
                #expect(batch.crossAttentionMask?.shape == [1, mask.count, mask[0].count, mask[0][0].count], "\(variant) \(name)")
                #expect(batch.crossAttentionMask?.integers() == mask.flatMap { $0.flatMap { $0 } }, "\(variant) \(name)")
            } else {
                #expect(batch.crossAttentionMask == nil)
            }
        }
    }

    @Test("building the files from a checkpoint that has them gives the same files")
    func idempotent() throws {
        let first = try Self.written("bos-template")
        defer { try? FileManager.default.removeItem(at: first) }
        let again = try VisionCheckpointFiles(source: first, config: Self.config)
        for name in VisionCheckpointFiles.fileNames {
            #expect(again.contents[name] == (try Data(contentsOf: first.appendingPathComponent(name))), "\(name)")
        }
    }

    @Test("an image_token_index that another token holds is refused, naming the token")
    func takenImageID() throws {
        let source = try Self.source("shared")
        defer { try? FileManager.default.removeItem(at: source) }
        var config = Self.config
        config.imageTokenIndex = 128_009
        #expect { try VisionCheckpointFiles(source: source, config: config) } throws: {
            "\($0)".contains("image_token_index 128009 is already the id of <|eot_id|>")
        }
        let empty = source.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        #expect { try VisionCheckpointFiles(source: empty, config: Self.config) } throws: { "\($0)".contains("has no tokenizer.json") }
    }
}

/// `<|image|>` is spliced into the text of `tokenizer.json`, leaving every other byte as it was.
@Suite("Splicing <|image|> into tokenizer.json")
struct ImageTokenSpliceTests {
    static func splice(_ json: String) throws -> String {
        String(decoding: try VisionCheckpointFiles.addingImageToken(to: Array(json.utf8), id: 9, file: "t.json").json, as: UTF8.self)
    }

    static let entry = #"{"content":"<|image|>","id":9,"lstrip":false,"normalized":false,"rstrip":false,"single_word":false,"special":true}"#

    @Test("into a list with entries, an empty list, or a file without the key; brackets inside strings are skipped")
    func splicing() throws {
        let vocab = #""model": {"vocab": {"]": 0, "[\"": 1}}"#
        #expect(try Self.splice(#"{\#(vocab), "added_tokens": [{"id": 2, "content": "a]"}] }"#)
                == #"{\#(vocab), "added_tokens": [{"id": 2, "content": "a]"},\#(Self.entry)] }"#)
        #expect(try Self.splice(#"{"added_tokens": [ ], \#(vocab)}"#) == #"{"added_tokens": [ \#(Self.entry)], \#(vocab)}"#)
        #expect(try Self.splice(#"{\#(vocab)}"#) == #"{"added_tokens":[\#(Self.entry)],\#(vocab)}"#)
        let present = #"{"added_tokens": [{"id": 9, "content": "<|image|>"}]}"#
        #expect(try Self.splice(present) == present)
        #expect { try Self.splice(#"{"added_tokens": [{"id": 4, "content": "<|image|>"}]}"#) } throws: {
            "\($0)" == "t.json: <|image|> has id 4 but config.json's image_token_index is 9"
        }
        #expect { try Self.splice(#"{\#(vocab.replacingOccurrences(of: "1}", with: "9}"))}"#) } throws: {
            "\($0)" == #"t.json: image_token_index 9 is already the id of [""#
        }
    }
}
