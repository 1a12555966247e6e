import Checkpoint
import Foundation
import Tokenization

/// The files beside the weights that make a directory a complete Llama 3.2 Vision checkpoint, one
/// that transformers' `AutoProcessor` and `MllamaForConditionalGeneration` open as it is:
///
/// | file | what it holds |
/// | --- | --- |
/// | `tokenizer.json` | the source's, with `<|image|>` added as a special token at `image_token_index` |
/// | `tokenizer_config.json` | the source's fields plus `bos_token`, `eos_token`, `pad_token` (`<|finetune_right_pad_id|>` when the vocabulary has it), `added_tokens_decoder`, `tokenizer_class: PreTrainedTokenizerFast`, `processor_class: MllamaProcessor` and the vision chat template |
/// | `special_tokens_map.json` | the same special tokens, for readers of the older layout |
/// | `chat_template.json` | the vision chat template, where transformers' processors look for it |
/// | `preprocessor_config.json` | the source's image settings, or the published ones for the config's tile size, with `processor_class` |
/// | `generation_config.json` | the source's, with its end-of-turn ids (`eos_token_id`), `bos_token_id` and `pad_token_id` |
///
/// The source's BOS convention is kept: its `tokenizer.json` post-processor is copied unchanged
/// (the Llama 3.1 file prepends `<|begin_of_text|>`, the Llama 3.0 one adds nothing), and
/// `tokenizer_class` is `PreTrainedTokenizerFast` because `LlamaTokenizerFast` would add a BOS of
/// its own in transformers 4.x. Building the files from a directory that already has them (a
/// previous stage's output) gives the same files again.
///
/// ```swift
/// let files = try VisionCheckpointFiles(source: textModelDirectory, config: mllamaConfig)   // reads and checks
/// try files.write(to: outputDirectory)                                                         // each file atomically
/// ```
public struct VisionCheckpointFiles: Sendable {
    /// The names of the files written, in the order they are written.
    public static let fileNames = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                   "chat_template.json", MllamaImageProcessorConfig.fileName, GenerationConfig.fileName]

    /// File name → contents, for every name in ``fileNames``.
    public let contents: [String: Data]

    /// The tokenizer the written files describe, as VLMKit (and transformers) load it.
    public let tokenizer: Tokenizer

    /// Reads the tokenizer, processor and generation files of `source` and builds the vision
    /// checkpoint's versions of them for `config`. Nothing is written.
    ///
    /// - Parameters:
    ///   - source: The text model's directory (or a vision checkpoint's), holding `tokenizer.json`
    ///     or `tokenizer.json.zst`, and optionally `tokenizer_config.json`, `generation_config.json`
    ///     and `preprocessor_config.json`.
    ///   - config: The vision model's configuration: `image_token_index`, the vision tile size and
    ///     tile count, and the text model's BOS / EOS / pad ids as fallbacks.
    /// - Throws: ``Checkpoint/CheckpointError`` naming the file when the source has no
    ///   `tokenizer.json`, when `image_token_index` is taken by another token or `<|image|>` has
    ///   another id, or when a source file is malformed or disagrees with `config`.
    public init(source: URL, config: MllamaConfig) throws {
        let (tokenizerURL, tokenizerBytes) = try Self.readTokenizerJSON(in: source)
        let (tokenizerJSON, addedTokens) = try Self.addingImageToken(to: tokenizerBytes, id: config.imageTokenIndex,
                                                                     file: tokenizerURL.path)
        tokenizer = try Tokenizer(huggingFaceJSON: [UInt8](tokenizerJSON), source: tokenizerURL.path)

        let tokenizerConfigURL = source.appendingPathComponent(TokenizerConfiguration.fileName)
        var tokenizerConfig = try Self.jsonObject(at: tokenizerConfigURL) ?? [:]
        let specials = try Self.specialTokens(tokenizer: tokenizer, sourceConfig: tokenizerConfig, text: config.textConfig.llama,
                                              file: tokenizerConfigURL.path)
        tokenizerConfig["bos_token"] = specials.bos
        tokenizerConfig["eos_token"] = specials.eos
        tokenizerConfig["pad_token"] = specials.pad ?? NSNull()
        tokenizerConfig["added_tokens_decoder"] = try Self.addedTokensDecoder(of: addedTokens, file: tokenizerURL.path)
        tokenizerConfig["tokenizer_class"] = "PreTrainedTokenizerFast"
        tokenizerConfig["processor_class"] = "MllamaProcessor"
        tokenizerConfig["chat_template"] = Llama3ChatFormat.visionChatTemplate
        if tokenizerConfig["model_input_names"] == nil { tokenizerConfig["model_input_names"] = ["input_ids", "attention_mask"] }
        if tokenizerConfig["model_max_length"] == nil { tokenizerConfig["model_max_length"] = config.textConfig.llama.maxPositionEmbeddings }

        var specialTokensMap: [String: Any] = ["bos_token": specials.bos, "eos_token": specials.eos]
        if let pad = specials.pad { specialTokensMap["pad_token"] = pad }

        var contents: [String: Data] = [:]
        contents["tokenizer.json"] = tokenizerJSON
        contents["tokenizer_config.json"] = try Self.serialize(tokenizerConfig)
        contents["special_tokens_map.json"] = try Self.serialize(specialTokensMap)
        contents["chat_template.json"] = try Self.serialize(["chat_template": Llama3ChatFormat.visionChatTemplate])
        contents[MllamaImageProcessorConfig.fileName] = try Self.imageProcessorConfig(source: source, config: config).jsonData()
        contents[GenerationConfig.fileName] = try Self.generationConfig(source: source, config: config, tokenizer: tokenizer,
                                                                        pad: specials.pad)
        self.contents = contents
    }

    /// Writes every file into `output` (created if needed), each atomically.
    ///
    /// - Throws: ``Checkpoint/CheckpointError`` naming the file that could not be written.
    public func write(to output: URL) throws {
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        for name in Self.fileNames {
            try AtomicFile.write(contents[name]!, to: output.appendingPathComponent(name))
        }
    }

    /// Builds the files from `source` for `config` and writes them into `output`: the support files
    /// every vision checkpoint VLMKit writes needs beside its `config.json` and weights.
    ///
    /// ```swift
    /// try VisionCheckpointFiles.write(from: textModelDirectory, config: config, to: stageOutput)
    /// ```
    ///
    /// - Throws: as ``init(source:config:)`` and ``write(to:)``; nothing is written when reading fails.
    public static func write(from source: URL, config: MllamaConfig, to output: URL) throws {
        try VisionCheckpointFiles(source: source, config: config).write(to: output)
    }

    // MARK: - tokenizer.json

    private static func readTokenizerJSON(in source: URL) throws -> (URL, [UInt8]) {
        let plain = source.appendingPathComponent("tokenizer.json")
        if FileManager.default.fileExists(atPath: plain.path) {
            do { return (plain, [UInt8](try Data(contentsOf: plain))) } catch {
                throw CheckpointError(file: plain.path, reason: "cannot be read (\(error.localizedDescription))")
            }
        }
        let compressed = source.appendingPathComponent("tokenizer.json.zst")
        if FileManager.default.fileExists(atPath: compressed.path) {
            return (compressed, try Zstd.decompress(contentsOf: compressed))
        }
        throw CheckpointError(file: source.path, reason: "has no tokenizer.json or tokenizer.json.zst; a vision checkpoint "
                              + "needs the text model's Hugging Face tokenizer (a tiktoken tokenizer.model alone cannot be converted)")
    }

    /// The `tokenizer.json` with `<|image|>` appended to `added_tokens` at `id` (the bytes as they
    /// are when it is already there at that id), and its parsed `added_tokens`.
    ///
    /// The entry is spliced into the file's text rather than the whole file re-serialised, so every
    /// other byte stays the source's (and writing twice gives the same file).
    static func addingImageToken(to bytes: [UInt8], id: Int, file: String) throws -> (json: Data, addedTokens: [[String: Any]]) {
        guard let root = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw CheckpointError(file: file, reason: "is not a JSON object")
        }
        let added = root["added_tokens"] as? [[String: Any]] ?? []
        let image = "<|image|>"
        if let existing = added.first(where: { ($0["content"] as? String) == image }) {
            let existingID = (existing["id"] as? NSNumber)?.intValue
            guard existingID == id else {
                throw CheckpointError(file: file, reason: "\(image) has id \(existingID.map(String.init) ?? "?") but config.json's image_token_index is \(id)")
            }
            return (Data(bytes), added)
        }
        let vocab = (root["model"] as? [String: Any])?["vocab"] as? [String: Any] ?? [:]
        if let holder = added.first(where: { ($0["id"] as? NSNumber)?.intValue == id })?["content"] as? String
            ?? vocab.first(where: { ($0.value as? NSNumber)?.intValue == id })?.key {
            throw CheckpointError(file: file, reason: "image_token_index \(id) is already the id of \(holder)")
        }
        let entry: [String: Any] = ["id": id, "content": image, "single_word": false, "lstrip": false, "rstrip": false,
                                    "normalized": false, "special": true]
        let entryText = [UInt8](try JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]))
        var output = bytes
        if let (start, end) = addedTokensArray(in: bytes) {
            let isEmpty = bytes[(start + 1)..<end].allSatisfy { [0x20, 0x0A, 0x0D, 0x09].contains($0) }
            output.replaceSubrange(end..<end, with: (isEmpty ? [] : Array(",".utf8)) + entryText)
        } else if root["added_tokens"] == nil, let brace = bytes.firstIndex(of: UInt8(ascii: "{")) {
            output.replaceSubrange((brace + 1)..<(brace + 1), with: Array(#""added_tokens":["#.utf8) + entryText + Array("],".utf8))
        } else {
            throw CheckpointError(file: file, reason: "added_tokens is not a list")
        }
        return (Data(output), added + [entry])
    }

    /// The byte offsets of the `[` and `]` of the `"added_tokens": [...]` list in a JSON text.
    private static func addedTokensArray(in bytes: [UInt8]) -> (Int, Int)? {
        let key = Array(#""added_tokens""#.utf8)
        var i = 0
        while i + key.count <= bytes.count {
            guard bytes[i] == key[0], Array(bytes[i..<(i + key.count)]) == key else { i += 1; continue }
            var j = i + key.count
            while j < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[j]) { j += 1 }
            guard j < bytes.count, bytes[j] == UInt8(ascii: ":") else { i += 1; continue }
            j += 1
            while j < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[j]) { j += 1 }
            guard j < bytes.count, bytes[j] == UInt8(ascii: "[") else { i += 1; continue }
            // Find the matching "]", skipping strings (which may hold brackets and escaped quotes).
            let open = j
            var depth = 0, inString = false, escaped = false
            while j < bytes.count {
                let byte = bytes[j]
                if inString {
                    if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                } else if byte == UInt8(ascii: "\"") {
                    inString = true
                } else if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "{") {
                    depth += 1
                } else if byte == UInt8(ascii: "]") || byte == UInt8(ascii: "}") {
                    depth -= 1
                    if depth == 0 { return (open, j) }
                }
                j += 1
            }
            return nil
        }
        return nil
    }

    /// `added_tokens_decoder` of `tokenizer_config.json`: id → the added token's flags.
    private static func addedTokensDecoder(of addedTokens: [[String: Any]], file: String) throws -> [String: Any] {
        var decoder: [String: Any] = [:]
        for token in addedTokens {
            guard let id = (token["id"] as? NSNumber)?.intValue, let content = token["content"] as? String else {
                throw CheckpointError(file: file, reason: "an entry of added_tokens lacks \"id\" or \"content\"")
            }
            var entry: [String: Any] = ["content": content]
            for flag in ["lstrip", "normalized", "rstrip", "single_word", "special"] {
                entry[flag] = (token[flag] as? Bool) ?? false
            }
            decoder[String(id)] = entry
        }
        return decoder
    }

    // MARK: - Special tokens

    private struct SpecialTokens {
        var bos: String, eos: String, pad: String?
    }

    /// BOS and EOS as the source names them, else the text model's ids' tokens; the pad token is
    /// Llama 3.1's `<|finetune_right_pad_id|>` where the vocabulary has it, else the source's.
    private static func specialTokens(tokenizer: Tokenizer, sourceConfig: [String: Any], text: LlamaConfig,
                                      file: String) throws -> SpecialTokens {
        func named(_ key: String) -> String? {
            switch sourceConfig[key] {
            case let text as String: text
            case let added as [String: Any]: added["content"] as? String
            default: nil
            }
        }
        func token(of id: Int?) -> String? {
            guard let id, let bytes = tokenizer.bytes(ofToken: id) else { return nil }
            let text = String(decoding: bytes, as: UTF8.self)
            return tokenizer.specialTokenID(text) == id ? text : nil
        }
        let bos = named("bos_token") ?? token(of: text.bosTokenId) ?? "<|begin_of_text|>"
        let eos = named("eos_token") ?? token(of: text.eosTokenIds?.first) ?? "<|end_of_text|>"
        for (key, value) in [("bos_token", bos), ("eos_token", eos)] where tokenizer.specialTokenID(value) == nil {
            throw CheckpointError(file: file, reason: "\(key) \(value) is not a special token of the tokenizer")
        }
        let finetunePad = "<|finetune_right_pad_id|>"
        let pad = tokenizer.specialTokenID(finetunePad) != nil ? finetunePad : named("pad_token")
        return SpecialTokens(bos: bos, eos: eos, pad: pad)
    }

    // MARK: - Processor and generation settings

    private static func imageProcessorConfig(source: URL, config: MllamaConfig) throws -> MllamaImageProcessorConfig {
        let vision = config.visionConfig
        let url = source.appendingPathComponent(MllamaImageProcessorConfig.fileName)
        guard FileManager.default.fileExists(atPath: url.path) else {
            return .published(tileSize: vision.imageSize, maxImageTiles: vision.maxNumTiles)
        }
        let existing = try MllamaImageProcessorConfig.load(from: url)
        guard existing.size.height == vision.imageSize, existing.size.width == vision.imageSize else {
            throw CheckpointError(file: url.path, reason: "size is \(existing.size.height ?? 0)×\(existing.size.width ?? 0) but the vision model's image_size is \(vision.imageSize)")
        }
        guard existing.maxImageTiles == vision.maxNumTiles else {
            throw CheckpointError(file: url.path, reason: "max_image_tiles is \(existing.maxImageTiles) but the vision model's max_num_tiles is \(vision.maxNumTiles)")
        }
        return existing
    }

    /// The source's `generation_config.json` (every field kept), with `eos_token_id` from the text
    /// config when it has none, `bos_token_id` likewise, and `pad_token_id` the pad token's id.
    private static func generationConfig(source: URL, config: MllamaConfig, tokenizer: Tokenizer, pad: String?) throws -> Data {
        let url = source.appendingPathComponent(GenerationConfig.fileName)
        var generation = try jsonObject(at: url) ?? [:]
        if generation["eos_token_id"] == nil || generation["eos_token_id"] is NSNull, let eos = config.textConfig.llama.eosTokenIds {
            generation["eos_token_id"] = eos.count == 1 ? eos[0] as Any : eos as Any
        }
        if generation["bos_token_id"] == nil || generation["bos_token_id"] is NSNull, let bos = config.textConfig.llama.bosTokenId {
            generation["bos_token_id"] = bos
        }
        if generation["pad_token_id"] == nil || generation["pad_token_id"] is NSNull, let pad, let id = tokenizer.specialTokenID(pad) {
            generation["pad_token_id"] = id
        }
        // Checked by the reader VLMKit uses, so a bad source file fails here, not at generation time.
        _ = try GenerationConfig.decode(try serialize(generation), file: url.path)
        return try serialize(generation)
    }

    // MARK: - JSON

    private static func jsonObject(at url: URL) throws -> [String: Any]? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw CheckpointError(file: url.path, reason: "cannot be read (\(error.localizedDescription))")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError(file: url.path, reason: "is not a JSON object")
        }
        return object
    }

    /// Sorted keys, so the same inputs give the same bytes.
    private static func serialize(_ object: [String: Any]) throws -> Data {
        var data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        data.append(UInt8(ascii: "\n"))
        return data
    }
}
