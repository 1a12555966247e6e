import Foundation

/// The fields of a Hugging Face `tokenizer_config.json` that change what a text becomes.
///
/// Special-token fields may be a string or an `AddedToken` object (`{"content": "<|eot_id|>", …}`);
/// both are read as the token's text.
public struct TokenizerConfiguration: Sendable, Equatable {
    public static let fileName = "tokenizer_config.json"

    /// `add_bos_token`, when the file sets it.
    public var addBosToken: Bool?
    /// `add_eos_token`, when the file sets it.
    public var addEosToken: Bool?
    public var bosToken: String?
    public var eosToken: String?
    public var padToken: String?
    /// `chat_template` when it is a single template (a list of named templates gives its "default").
    public var chatTemplate: String?

    public init(addBosToken: Bool? = nil, addEosToken: Bool? = nil, bosToken: String? = nil, eosToken: String? = nil,
                padToken: String? = nil, chatTemplate: String? = nil) {
        self.addBosToken = addBosToken
        self.addEosToken = addEosToken
        self.bosToken = bosToken
        self.eosToken = eosToken
        self.padToken = padToken
        self.chatTemplate = chatTemplate
    }

    /// Reads a `tokenizer_config.json`.
    ///
    /// - Throws: `TokenizerFileError` naming `source` and the field, e.g.
    ///   "tokenizer_config.json: add_bos_token is not true or false".
    public init(json: [UInt8], source: String) throws {
        func failure(_ reason: String) -> TokenizerFileError { TokenizerFileError(source: source, reason: reason) }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: Data(json)) } catch {
            throw failure("is not valid JSON (\(error.localizedDescription))")
        }
        guard let root = object as? [String: Any] else { throw failure("the top level is not a JSON object") }

        func flag(_ key: String) throws -> Bool? {
            guard let value = root[key], !(value is NSNull) else { return nil }
            guard !(value is String), let flag = value as? Bool else { throw failure("\(key) is not true or false") }
            return flag
        }
        func token(_ key: String) throws -> String? {
            guard let value = root[key], !(value is NSNull) else { return nil }
            if let text = value as? String { return text }
            if let added = value as? [String: Any], let content = added["content"] as? String { return content }
            throw failure("\(key) is neither a string nor an object with \"content\"")
        }
        self.init(addBosToken: try flag("add_bos_token"), addEosToken: try flag("add_eos_token"),
                  bosToken: try token("bos_token"), eosToken: try token("eos_token"), padToken: try token("pad_token"))
        switch root["chat_template"] {
        case let text as String:
            chatTemplate = text
        case let named as [[String: Any]]:
            chatTemplate = named.first { ($0["name"] as? String) == "default" }?["template"] as? String
        case nil, is NSNull:
            break
        default:
            throw failure("chat_template is neither a string nor a list of {\"name\", \"template\"}")
        }
    }
}

extension Tokenizer {
    /// This tokenizer as transformers (5.x) loads it together with `config`, its
    /// `tokenizer_config.json`: the special tokens added around a text are decided as there.
    ///
    /// - A tokenizer read from `tokenizer.json` keeps its file's `post_processor`: transformers
    ///   drops `add_bos_token` and `add_eos_token` whenever a `tokenizer.json` is loaded (5.24's
    ///   `_from_pretrained`), and 4.45's `PreTrainedTokenizerFast` never read them.
    /// - A tiktoken `tokenizer.model` has no post-processor; its template is `bos_token` when
    ///   `add_bos_token` is true, then the text, then `eos_token` when `add_eos_token` is true
    ///   (transformers' `update_post_processor`); nothing when the file sets neither.
    ///
    /// - Throws: `TokenizerFileError` when a flag asks for a token the tokenizer does not have.
    public func configured(with config: TokenizerConfiguration, source: String = TokenizerConfiguration.fileName) throws -> Tokenizer {
        guard !hasPostProcessorFile else { return self }
        func id(of token: String?, for flag: String) throws -> Int {
            guard let token else {
                throw TokenizerFileError(source: source, reason: "\(flag) is true but the file names no token for it")
            }
            guard let id = specialTokenID(token) ?? encodedAsSingleToken(token) else {
                throw TokenizerFileError(source: source, reason: "\(flag) asks for \(token), which is not a token")
            }
            return id
        }
        var result = self
        result.specialTokenTemplate = SpecialTokenTemplate(
            prefix: config.addBosToken == true ? [try id(of: config.bosToken, for: "add_bos_token")] : [],
            suffix: config.addEosToken == true ? [try id(of: config.eosToken, for: "add_eos_token")] : [])
        return result
    }

    private func encodedAsSingleToken(_ text: String) -> Int? {
        let ids = encode(text, allowSpecial: true)
        return ids.count == 1 ? ids[0] : nil
    }
}
