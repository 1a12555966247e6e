import Foundation
import Testing
@testable import Tokenization

/// Loads `json` as a `tokenizer.json` named "bad.json" and returns the error's text.
private func jsonError(_ json: String) -> String? {
    do {
        _ = try Tokenizer(huggingFaceJSON: Array(json.utf8), source: "bad.json")
        return nil
    } catch {
        return "\(error)"
    }
}

/// Loads `model` as a `tokenizer.model` named "bad.model" and returns the error's text.
private func modelError(_ model: String) -> String? {
    do {
        _ = try Tokenizer(tiktokenModel: Array(model.utf8), source: "bad.model")
        return nil
    } catch {
        return "\(error)"
    }
}

let llama3PreTokenizer = """
    {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": \(try! String(decoding: JSONEncoder().encode(Llama3PreTokenizer.pattern), as: UTF8.self))},
       "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}
    """

/// The 256 byte-level tokens, ids 0…255, as a `model.vocab` body.
let byteVocabulary: String = ByteLevelAlphabet.scalarValues.enumerated().map { byte, scalar in
    let text = String(Character(Unicode.Scalar(scalar)!))
    return "\(String(decoding: try! JSONEncoder().encode(text), as: UTF8.self)): \(byte)"
}.joined(separator: ", ")

@Test("A tokenizer.json without model.vocab names the file and the field")
func missingVocabulary() {
    let error = jsonError(#"{"model": {"type": "BPE", "merges": []}, "pre_tokenizer": \#(llama3PreTokenizer)}"#)
    #expect(error == "bad.json: model.vocab is missing")
}

@Test("A tokenizer.json with an unknown merge names the merge's index")
func unknownMerge() {
    let json = #"{"model": {"type": "BPE", "vocab": {\#(byteVocabulary)}, "merges": ["a b", "x qq"]}, "pre_tokenizer": \#(llama3PreTokenizer)}"#
    #expect(jsonError(json) == #"bad.json: model.merges[0] ("a b") names a token missing from model.vocab"#)
}

@Test("A tokenizer.json with another pre-tokenizer or a normalizer is refused")
func unsupportedPipeline() {
    let other = #"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Whitespace"}}"#
    #expect(jsonError(other)?.hasPrefix("bad.json: pre_tokenizer is [\"Whitespace\"]") == true)
    let normalizer = #"{"normalizer": {"type": "NFC"}, "model": {"type": "BPE"}, "pre_tokenizer": \#(llama3PreTokenizer)}"#
    #expect(jsonError(normalizer) == "bad.json: normalizer must be null; normalizers are not supported")
    #expect(jsonError("[1, 2]") == "bad.json: the top level is not a JSON object")
    #expect(jsonError("{").map { $0.hasPrefix("bad.json: is not valid JSON") } == true)
}

@Test("A small tokenizer.json with both merge spellings loads and merges by rank")
func smallTokenizerJSON() throws {
    // Bytes 0…255, then "ab" (256) and "abc" (257); "a b" is a string merge, ["ab", "c"] an array one.
    let json = #"{"model": {"type": "BPE", "vocab": {\#(byteVocabulary), "ab": 256, "abc": 257}, "merges": ["a b", ["ab", "c"]]}, "pre_tokenizer": \#(llama3PreTokenizer), "added_tokens": [{"id": 258, "content": "<|x|>", "special": true}]}"#
    let tokenizer = try Tokenizer(huggingFaceJSON: Array(json.utf8), source: "small.json")
    let a = Int(UInt8(ascii: "a")), b = Int(UInt8(ascii: "b")), space = Int(UInt8(ascii: " "))
    #expect(tokenizer.encode("abcab<|x|> ba") == [257, 256, 258, space, b, a])
    #expect(tokenizer.encode("<|x|>", allowSpecial: false).count == 5)
    #expect(tokenizer.decode([257, 258, 256], skipSpecialTokens: true) == "abcab")
}

@Test("A tokenizer.model with bad base64 names the line")
func badBase64() {
    #expect(modelError("IQ== 0\nIg== 1\n!!!! 2\n") == #"bad.model: line 3: bad base64 "!!!!""#)
}

@Test("A tokenizer.model with a bad rank, a missing field or a repeated rank names the line")
func badRankLines() {
    #expect(modelError("IQ== zero\n") == #"bad.model: line 1: bad rank "zero""#)
    #expect(modelError("IQ==\n") == #"bad.model: line 1: expected "base64-token rank", found 1 fields"#)
    #expect(modelError("IQ== 0\nIg== 0\n") == "bad.model: line 2: rank 0 appears twice")
}

@Test("A tokenizer.model that lacks a single-byte token says which byte")
func missingByte() {
    #expect(modelError("IQ== 0\n") == "bad.model: the vocabulary has no token for byte 0x0")
}

@Test("A file that cannot be read names its path")
func unreadableFile() {
    #expect(throws: TokenizerFileError.self) {
        try Tokenizer(contentsOf: URL(fileURLWithPath: "/nonexistent/tokenizer.model"))
    }
}
