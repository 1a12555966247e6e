import Foundation

// Reading a Hugging Face `tokenizer.json`: a byte-level BPE model, the Llama 3 pre-tokenizer, and
// added tokens. Anything else the file might ask for (normalizers, other pre-tokenizers, stripping
// added tokens) is refused with an error naming the field, rather than silently tokenizing wrongly.

extension Tokenizer {
    /// Loads a tokenizer from a file: Meta's tiktoken `tokenizer.model`, or a Hugging Face
    /// `tokenizer.json` (recognised by the `.json` extension or a leading `{`).
    ///
    /// - Parameters:
    ///   - url: The file. Compressed files are the caller's job (the `vlm` tool decompresses
    ///     `tokenizer.json.zst` and calls `init(huggingFaceJSON:source:extraSpecialTokens:)`).
    ///   - extraSpecialTokens: Special tokens beyond the file's own, such as Llama 3.2 Vision's
    ///     `["<|image|>": 128256]`.
    /// - Throws: `TokenizerFileError` naming the file and what is wrong with it.
    public init(contentsOf url: URL, extraSpecialTokens: [String: Int] = [:]) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw TokenizerFileError(source: url.path, reason: "cannot be read (\(error.localizedDescription))")
        }
        let bytes = [UInt8](data)
        let looksLikeJSON = url.pathExtension == "json" || bytes.first(where: { $0 > 0x20 }) == UInt8(ascii: "{")
        if looksLikeJSON {
            try self.init(huggingFaceJSON: bytes, source: url.path, extraSpecialTokens: extraSpecialTokens)
        } else {
            try self.init(tiktokenModel: bytes, source: url.path, extraSpecialTokens: extraSpecialTokens)
        }
    }

    /// Loads a Hugging Face `tokenizer.json`: `model` (type BPE, `vocab`, `merges` as `"a b"` strings
    /// or `["a", "b"]` pairs, `ignore_merges`), `pre_tokenizer` (the Llama 3 Split regex then
    /// ByteLevel), `added_tokens` and `post_processor` (the ``specialTokenTemplate``).
    ///
    /// - Parameters:
    ///   - json: The file's bytes.
    ///   - source: The name errors give for the file.
    ///   - extraSpecialTokens: Special tokens to add (an id may not collide with another token).
    /// - Throws: `TokenizerFileError`, e.g. "tokenizer.json: model.vocab is missing".
    public init(huggingFaceJSON json: [UInt8], source: String, extraSpecialTokens: [String: Int] = [:]) throws {
        func failure(_ reason: String) -> TokenizerFileError { TokenizerFileError(source: source, reason: reason) }
        let root: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
                throw failure("the top level is not a JSON object")
            }
            root = object
        } catch let error as TokenizerFileError {
            throw error
        } catch {
            throw failure("is not valid JSON (\(error.localizedDescription))")
        }

        guard let model = root["model"] as? [String: Any] else { throw failure("model is missing") }
        if let type = model["type"] as? String, type != "BPE" {
            throw failure("model.type is \"\(type)\"; only byte-level \"BPE\" is supported")
        }
        if let normalizer = root["normalizer"], !(normalizer is NSNull) {
            throw failure("normalizer must be null; normalizers are not supported")
        }
        try Self.checkPreTokenizer(root["pre_tokenizer"], failure: failure)
        guard let vocab = model["vocab"] as? [String: Any] else { throw failure("model.vocab is missing") }
        guard let mergeList = model["merges"] as? [Any] else { throw failure("model.merges is missing") }
        let ignoreMerges = (model["ignore_merges"] as? Bool) ?? false

        // Vocabulary: byte-level spellings -> bytes, by id.
        var idsBySpelling: [String: Int32] = [:]
        idsBySpelling.reserveCapacity(vocab.count)
        var tokenBytes: [[UInt8]?] = []
        for (spelling, value) in vocab {
            guard let id = (value as? NSNumber)?.intValue, id >= 0, id < 1 << 24 else {
                throw failure("model.vocab[\"\(spelling)\"] is not a token id")
            }
            guard let bytes = ByteLevelAlphabet.bytes(spelledBy: spelling) else {
                throw failure("model.vocab[\"\(spelling)\"] is not spelled in the byte-level alphabet")
            }
            if id >= tokenBytes.count { tokenBytes.append(contentsOf: repeatElement(nil, count: id + 1 - tokenBytes.count)) }
            if tokenBytes[id] != nil { throw failure("model.vocab gives id \(id) to two tokens") }
            tokenBytes[id] = bytes
            idsBySpelling[spelling] = Int32(id)
        }

        // Merges: rank = position in the list.
        var merges = MergeTable(expectedCount: mergeList.count)
        for (rank, entry) in mergeList.enumerated() {
            let pair: [Substring]
            if let text = entry as? String {
                pair = text.split(separator: " ", omittingEmptySubsequences: false)
            } else if let parts = entry as? [String] {
                pair = parts.map { Substring($0) }
            } else {
                throw failure("model.merges[\(rank)] is neither \"a b\" nor [\"a\", \"b\"]")
            }
            guard pair.count == 2 else { throw failure("model.merges[\(rank)] does not name exactly two tokens") }
            guard let left = idsBySpelling[String(pair[0])], let right = idsBySpelling[String(pair[1])],
                  let merged = idsBySpelling[String(pair[0] + pair[1])]
            else {
                throw failure("model.merges[\(rank)] (\"\(pair[0]) \(pair[1])\") names a token missing from model.vocab")
            }
            merges.insert(left: left, right: right, rank: UInt32(rank), merged: merged)
        }

        // Added tokens: all are matched in text (Llama 3's are all special).
        var specials: [String: Int] = [:]
        for (index, value) in ((root["added_tokens"] as? [Any]) ?? []).enumerated() {
            guard let token = value as? [String: Any], let content = token["content"] as? String,
                  let id = (token["id"] as? NSNumber)?.intValue, id >= 0
            else { throw failure("added_tokens[\(index)] needs \"id\" and \"content\"") }
            for flag in ["lstrip", "rstrip", "single_word"] where (token[flag] as? Bool) == true {
                throw failure("added_tokens[\(index)] (\(content)) sets \(flag), which is not supported")
            }
            specials[content] = id
        }
        let template = try SpecialTokenTemplate.parse(postProcessor: root["post_processor"], failure: failure)
        try self.init(tokenBytes: tokenBytes, merges: merges, ignoreMerges: ignoreMerges,
                      specialTokens: specials.merging(extraSpecialTokens) { _, extra in extra }, template: template,
                      source: source)
    }

    private static func checkPreTokenizer(_ value: Any?, failure: (String) -> TokenizerFileError) throws {
        guard let preTokenizer = value as? [String: Any] else { throw failure("pre_tokenizer is missing") }
        let steps = (preTokenizer["type"] as? String) == "Sequence"
            ? (preTokenizer["pretokenizers"] as? [[String: Any]] ?? []) : [preTokenizer]
        let types = steps.map { $0["type"] as? String ?? "?" }
        guard types == ["Split", "ByteLevel"] else {
            throw failure("pre_tokenizer is \(types); only Split (the Llama 3 regex) then ByteLevel is supported")
        }
        let pattern = (steps[0]["pattern"] as? [String: Any])?["Regex"] as? String
        guard pattern == Llama3PreTokenizer.pattern else {
            throw failure("pre_tokenizer Split pattern is not the Llama 3 regex")
        }
        if (steps[1]["add_prefix_space"] as? Bool) == true || (steps[1]["use_regex"] as? Bool) == true {
            throw failure("pre_tokenizer ByteLevel must have add_prefix_space and use_regex false")
        }
    }

    /// The common end of both loaders. `tokenBytes[id]` is nil for ids with no ordinary token;
    /// `template` is the `tokenizer.json` post-processor's (nil for tiktoken, which has none).
    init(tokenBytes: [[UInt8]?], merges: MergeTable, ignoreMerges: Bool, specialTokens: [String: Int],
         template: SpecialTokenTemplate? = nil, source: String) throws {
        var tokenBytes = tokenBytes
        for (id, texts) in Dictionary(grouping: specialTokens.keys, by: { specialTokens[$0]! }) where texts.count > 1 {
            throw TokenizerFileError(source: source, reason: "special tokens \(texts.sorted().joined(separator: " and ")) both have id \(id)")
        }
        for (text, id) in specialTokens.sorted(by: { $0.value < $1.value }) {
            guard id >= 0, id < 1 << 24 else { throw TokenizerFileError(source: source, reason: "special token \(text) has id \(id)") }
            if id >= tokenBytes.count { tokenBytes.append(contentsOf: repeatElement(nil, count: id + 1 - tokenBytes.count)) }
            if let existing = tokenBytes[id], existing != Array(text.utf8) {
                throw TokenizerFileError(source: source, reason: "special token \(text) reuses id \(id) of the token '\(String(decoding: existing, as: UTF8.self))'")
            }
            tokenBytes[id] = Array(text.utf8)
        }
        let table = TokenByteTable(tokens: tokenBytes)
        var byteIds = [Int32](repeating: -1, count: 256)
        for byte in 0..<256 {
            let id = [UInt8(byte)].withUnsafeBufferPointer { table.id(of: $0) }
            guard let id else {
                throw TokenizerFileError(source: source, reason: "the vocabulary has no token for byte 0x"
                                         + String(byte, radix: 16, uppercase: true))
            }
            byteIds[byte] = id
        }
        self.tokens = table
        self.merges = merges
        self.byteIds = byteIds
        self.ignoreMerges = ignoreMerges
        self.specials = SpecialTokenMatcher(specialTokens)
        self.specialTokenTemplate = template ?? .empty
        self.hasPostProcessorFile = template != nil
    }
}
