import Foundation
import Testing
import Tokenization
import _TestSupport

/// Checks against Tests/Fixtures/tokenizer/trained/, made by Scripts/fixtures/make_trained_tokenizer_fixtures.py
/// with the release `vlm tokenizer train` and Hugging Face `tokenizers` / transformers.
@Suite("A trained tokenizer against Hugging Face")
struct BPETrainerFixtureTests {
    let folder = Fixtures.url("tokenizer/trained")

    @Test("retraining on the fixture corpus reproduces the committed tokenizer.json byte for byte")
    func retrainingIsReproducible() throws {
        let corpus = try String(contentsOf: folder.appendingPathComponent("corpus.txt"), encoding: .utf8)
        let bpe = try BPETrainer.train(corpus: corpus, vocabularySize: 512)
        #expect(bpe.tokenizerJSON() == (try String(contentsOf: folder.appendingPathComponent("tokenizer.json"), encoding: .utf8)))
        #expect(bpe.tokenizerConfigJSON() == (try String(contentsOf: folder.appendingPathComponent("tokenizer_config.json"), encoding: .utf8)))
        let tokenizer = try bpe.tokenizer()
        #expect(tokenizer.decode(tokenizer.encode(corpus, allowSpecial: false)) == corpus)
    }

    @Test("VLMKit gives the ids Hugging Face tokenizers gives with the trained tokenizer.json")
    func idsMatchHuggingFace() throws {
        struct Expected: Decodable {
            let vocab_size: Int
            let bos_id: Int
            let texts: [String]
            let ids: [[Int]]
        }
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: folder.appendingPathComponent("expected.json")))
        let tokenizer = try Tokenizer(contentsOf: folder.appendingPathComponent("tokenizer.json"))
        #expect(tokenizer.vocabularySize == expected.vocab_size)
        #expect(tokenizer.specialTokenID("<|begin_of_text|>") == expected.bos_id)
        #expect(expected.texts.count >= 30)
        for (text, ids) in zip(expected.texts, expected.ids) {
            #expect(tokenizer.encode(text) == ids, "\(text.debugDescription)")
        }
    }
}
