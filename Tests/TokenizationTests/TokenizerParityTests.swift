import Checkpoint
import Foundation
import Testing
import _TestSupport
@testable import Tokenization

extension Trait where Self == ConditionTrait {
    /// Skips a test, naming what is missing, when `../shared/reference/llama3-tokenizer` is absent.
    static var needsSharedTokenizer: Self {
        .enabled(if: Fixtures.hasSharedReference("llama3-tokenizer/tokenizer.json.zst")
                     && Fixtures.hasSharedReference("llama3-tokenizer/tokenizer.model"),
                 Comment(rawValue: Fixtures.sharedReferenceNote("llama3-tokenizer/")))
    }
}

/// The reference tokenizer, loaded once per format and shared by the tests of this file.
enum ReferenceTokenizers {
    static let extraSpecials = ["<|image|>": 128_256]

    static let fromJSON: Tokenizer = {
        let url = Fixtures.sharedReference("llama3-tokenizer/tokenizer.json.zst")
        let bytes = try! Zstd.decompress(contentsOf: url)
        return try! Tokenizer(huggingFaceJSON: bytes, source: url.path, extraSpecialTokens: extraSpecials)
    }()

    static let fromModel: Tokenizer = try! Tokenizer(
        contentsOf: Fixtures.sharedReference("llama3-tokenizer/tokenizer.model"), extraSpecialTokens: extraSpecials)

    /// `Tests/Fixtures/tokenizer/corpus.json.zst`: strings and Hugging Face `tokenizers`' ids for them.
    struct Corpus: Decodable {
        let texts: [String]
        let ids: [[Int]]
    }

    static let corpus: Corpus = {
        let bytes = try! Zstd.decompress(contentsOf: Fixtures.url("tokenizer/corpus.json.zst"))
        return try! JSONDecoder().decode(Corpus.self, from: Data(bytes))
    }()
}

/// Compares a tokenizer with the reference ids over the whole corpus; returns the first mismatches.
private func mismatches(_ tokenizer: Tokenizer) -> (count: Int, examples: [String]) {
    let corpus = ReferenceTokenizers.corpus
    var count = 0
    var examples: [String] = []
    for (text, expected) in zip(corpus.texts, corpus.ids) {
        let ids = tokenizer.encode(text)
        if ids != expected {
            count += 1
            if examples.count < 5 { examples.append("\(text.debugDescription): got \(ids), want \(expected)") }
        }
    }
    return (count, examples)
}

@Test("The corpus fixture holds thousands of strings with ids for each", .needsSharedTokenizer)
func corpusIsLarge() {
    let corpus = ReferenceTokenizers.corpus
    #expect(corpus.texts.count > 3000)
    #expect(corpus.texts.count == corpus.ids.count)
}

@Test("tokenizer.json encodes the whole corpus exactly as Hugging Face tokenizers does", .needsSharedTokenizer)
func jsonParity() {
    let result = mismatches(ReferenceTokenizers.fromJSON)
    #expect(result.count == 0, "\(result.count) mismatches, e.g. \(result.examples.joined(separator: "\n"))")
}

@Test("tokenizer.model encodes the whole corpus exactly as Hugging Face tokenizers does", .needsSharedTokenizer)
func modelParity() {
    let result = mismatches(ReferenceTokenizers.fromModel)
    #expect(result.count == 0, "\(result.count) mismatches, e.g. \(result.examples.joined(separator: "\n"))")
}

@Test("Decoding the encoding gives back every corpus string", .needsSharedTokenizer)
func roundTrip() {
    let tokenizer = ReferenceTokenizers.fromModel
    var failures: [String] = []
    for text in ReferenceTokenizers.corpus.texts where tokenizer.decode(tokenizer.encode(text)) != text {
        failures.append(text.debugDescription)
    }
    #expect(failures.isEmpty, "\(failures.count) strings do not round-trip: \(failures.prefix(5))")
}

@Test("Both file formats agree on the vocabulary, the special tokens and <|image|>", .needsSharedTokenizer)
func formatsAgree() {
    let json = ReferenceTokenizers.fromJSON, model = ReferenceTokenizers.fromModel
    #expect(json.vocabularySize == 128_257)
    #expect(model.vocabularySize == 128_257)
    #expect(json.specialTokens == model.specialTokens)
    #expect(model.specialTokenID("<|image|>") == 128_256)
    #expect(model.specialTokenID("<|eot_id|>") == 128_009)
}

@Test("Meta's Llama 3 special-token names match special_tokens.json", .needsSharedTokenizer)
func specialTokenNames() throws {
    let data = try Data(contentsOf: Fixtures.sharedReference("llama3-tokenizer/special_tokens.json"))
    let reference = try JSONDecoder().decode([String: Int].self, from: data)
    #expect(Tokenizer.llama3SpecialTokens == reference)
}

@Test("tokenizer.json's ignore_merges is honoured: whole-piece tokens skip merging", .needsSharedTokenizer)
func ignoreMergesIsRead() {
    #expect(ReferenceTokenizers.fromJSON.ignoreMerges)
    #expect(ReferenceTokenizers.fromModel.ignoreMerges)
}
