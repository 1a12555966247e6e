import Foundation
import Testing
@testable import Tokenization

/// The special tokens a tokenizer adds around a text, decided from its files as transformers 5
/// decides them.
@Suite("Special-token template")
struct SpecialTokenTemplateTests {
    /// Bytes 0…255, `<s>` (256) and `</s>` (257), with `postProcessor` as the file's post-processor.
    static func tokenizer(postProcessor: String) throws -> Tokenizer {
        let json = #"{"model": {"type": "BPE", "vocab": {\#(byteVocabulary)}, "merges": []}, "pre_tokenizer": \#(llama3PreTokenizer), "added_tokens": [{"id": 256, "content": "<s>", "special": true}, {"id": 257, "content": "</s>", "special": true}], "post_processor": \#(postProcessor)}"#
        return try Tokenizer(huggingFaceJSON: Array(json.utf8), source: "tokenizer.json")
    }

    static let a = Int(UInt8(ascii: "a"))

    @Test("a TemplateProcessing inside a Sequence wraps the text; ByteLevel and null add nothing")
    func templates() throws {
        let bosEos = #"{"type": "Sequence", "processors": [{"type": "ByteLevel"}, {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [256], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [257], "tokens": ["</s>"]}}}]}"#
        let wrapped = try Self.tokenizer(postProcessor: bosEos)
        #expect(wrapped.specialTokenTemplate == SpecialTokenTemplate(prefix: [256], suffix: [257]))
        #expect(wrapped.encode("a", addingSpecialTokens: true) == [256, Self.a, 257])
        #expect(wrapped.encode("a", addingSpecialTokens: false) == [Self.a])
        #expect(try Self.tokenizer(postProcessor: #"{"type": "ByteLevel"}"#).encode("a", addingSpecialTokens: true) == [Self.a])
        #expect(try Self.tokenizer(postProcessor: "null").encode("a", addingSpecialTokens: true) == [Self.a])
        #expect { try Self.tokenizer(postProcessor: #"{"type": "BertProcessing"}"#) } throws: {
            "\($0)" == #"tokenizer.json: post_processor type "BertProcessing" is not supported (only TemplateProcessing, ByteLevel and Sequence)"#
        }
        let unknown = #"{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}}"#
        #expect { try Self.tokenizer(postProcessor: unknown) } throws: {
            "\($0)" == "tokenizer.json: post_processor.special_tokens has no ids for <x>, which post_processor.single uses"
        }
    }

    /// transformers 5 drops `add_bos_token` when a `tokenizer.json` is loaded (the fixture script's
    /// "shared" variant measures it: `tokenizer("Hello")` is `[9906]`, no BOS); only a tiktoken
    /// tokenizer, which has no post-processor, takes its template from the flags.
    @Test("add_bos_token and add_eos_token count for tiktoken tokenizers only")
    func addBosToken() throws {
        let config = try TokenizerConfiguration(
            json: Array(#"{"add_bos_token": true, "add_eos_token": true, "bos_token": {"content": "<s>"}, "eos_token": "</s>"}"#.utf8),
            source: "tokenizer_config.json")
        #expect(config.addBosToken == true && config.bosToken == "<s>" && config.eosToken == "</s>")
        let json = try Self.tokenizer(postProcessor: "null")
        #expect(try json.configured(with: config).encode("a", addingSpecialTokens: true) == [Self.a])
        let ranks = (0..<256).map { "\(Data([UInt8($0)]).base64EncodedString()) \($0)" }.joined(separator: "\n")
        let tiktoken = try Tokenizer(tiktokenModel: Array(ranks.utf8), source: "tokenizer.model",
                                     specialTokens: ["<s>": 256, "</s>": 257])
        #expect(tiktoken.encode("a", addingSpecialTokens: true) == [Self.a])
        #expect(try tiktoken.configured(with: config).encode("a", addingSpecialTokens: true) == [256, Self.a, 257])
        #expect { try TokenizerConfiguration(json: Array(#"{"add_bos_token": "yes"}"#.utf8), source: "tokenizer_config.json") } throws: {
            "\($0)" == "tokenizer_config.json: add_bos_token is not true or false"
        }
        let missing = try TokenizerConfiguration(json: Array(#"{"add_bos_token": true, "bos_token": "<b>"}"#.utf8), source: "c.json")
        #expect { try tiktoken.configured(with: missing, source: "c.json") } throws: {
            "\($0)" == "c.json: add_bos_token asks for <b>, which is not a token"
        }
    }
}
