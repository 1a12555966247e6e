import Foundation
import Testing
@testable import Tokenization

@Suite("Training a byte-level BPE tokenizer")
struct BPETrainerTests {
    /// The spelling of a merge as `tokenizer.json` writes it: "left right".
    private func spelled(_ bpe: TrainedBPE) -> [String] {
        bpe.merges.map { ByteLevelAlphabet.spelling(of: bpe.tokens[$0.left]) + " " + ByteLevelAlphabet.spelling(of: bpe.tokens[$0.right]) }
    }

    /// "aaabdaaabac" is one pre-tokenizer piece (all letters). Worked by hand:
    /// pairs a a ×4, a b ×2, b d, d a, b a, a c ×1 → merge "a a" (left to right: [aa]a b d [aa]a b a c);
    /// now aa a ×2 and a b ×2 tie: a (id 64) is older than aa (256), so "a b" wins → aa ab d aa ab a c;
    /// "aa ab" ×2 → aaab d aaab a c; then all pairs occur once and "a c" has the smallest left id (64).
    @Test("merges reproduce a hand-worked example, ties going to the older left token")
    func handWorkedExample() throws {
        let bpe = try BPETrainer.train(corpus: "aaabdaaabac", vocabularySize: 256 + 16 + 4)
        #expect(spelled(bpe) == ["a a", "a b", "aa ab", "a c"])
        #expect(bpe.tokens.count == 260 && bpe.vocabularySize == 276)
        #expect(bpe.tokens[0] == Array("!".utf8) && bpe.tokens[64] == Array("a".utf8))
        #expect(bpe.specialTokens.map(\.id) == Array(260..<276))
        #expect(bpe.specialTokenID("<|begin_of_text|>") == 260 && bpe.specialTokenID("<|eot_id|>") == 269)
        #expect(bpe.specialTokens[4].text == "<|finetune_right_pad_id|>" && bpe.specialTokens[15].text == "<|reserved_special_token_7|>")
        let tokenizer = try bpe.tokenizer()
        #expect(tokenizer.encode("aaabdaaabac").map { String(decoding: tokenizer.bytes(ofToken: $0)!, as: UTF8.self) }
                == ["aaab", "d", "aaab", "ac"])
    }

    @Test("merges never cross pre-tokenizer pieces, and counts weigh repeated pieces")
    func piecesAndCounts() throws {
        // Pieces "cd", " ab" ×3. "Ġ a" and "a b" both occur 3 times; "a" (id 64) is older than "Ġ"
        // (a non-printable byte, id 256 − 68 + 32 = 220), so "a b" wins, then "Ġ ab" (3), then "c d" (1).
        let bpe = try BPETrainer.train(corpus: "cd ab ab ab", vocabularySize: 256 + 16 + 3)
        #expect(spelled(bpe) == ["a b", "Ġ ab", "c d"])
        #expect(ByteLevelAlphabet.bytesInSpellingOrder[220] == 0x20)
    }

    @Test("training stops when every piece is one token")
    func stopsEarly() throws {
        let bpe = try BPETrainer.train(corpus: "hi hi", vocabularySize: 1000)
        #expect(spelled(bpe) == ["h i", "Ġ hi"] && bpe.vocabularySize == 256 + 2 + 16)
    }

    @Test("a vocabulary too small for the bytes and special tokens is refused")
    func tooSmall() {
        #expect(throws: TokenizerFileError.self) { try BPETrainer.train(corpus: "x", vocabularySize: 260) }
    }

    static let mixedText = """
        The quick brown fox jumps over the lazy dog. It's 12:45, we'll see; they're here!
        Résumé, naïve café — “quotes” … 1234567 numbers and 3.14159.
        自然语言处理 Привет, мир! مرحبا 😀👍🏽 tabs\tand\r\nwindows lines   spaces  
        <|begin_of_text|> is special only when written as a whole; <|eot_id|> too.
        """

    @Test("the trained tokenizer round-trips its corpus, is deterministic and compresses it")
    func roundTrip() throws {
        let corpus = (0..<20).map { "Line \($0): " + Self.mixedText }.joined(separator: "\n")
        let bpe = try BPETrainer.train(corpus: corpus, vocabularySize: 400)
        let again = try BPETrainer.train(corpus: corpus, vocabularySize: 400)
        #expect(bpe.tokenizerJSON() == again.tokenizerJSON() && bpe.tokenizerConfigJSON() == again.tokenizerConfigJSON())
        #expect(bpe.vocabularySize == 400)
        let tokenizer = try bpe.tokenizer()
        #expect(tokenizer.vocabularySize == 400)
        for line in corpus.split(separator: "\n", omittingEmptySubsequences: false) {
            let ids = tokenizer.encode(String(line), allowSpecial: false)
            #expect(tokenizer.decode(ids) == String(line))
        }
        let ids = tokenizer.encode(corpus, allowSpecial: false)
        #expect(ids.count * 2 < corpus.utf8.count, "\(ids.count) tokens for \(corpus.utf8.count) bytes")
        #expect(tokenizer.encode("<|eot_id|>") == [bpe.specialTokenID("<|eot_id|>")!])
    }

    @Test("tokenizer.json has Llama 3's sections: no normalizer, Split + ByteLevel, BOS template, ByteLevel decoder")
    func fileLayout() throws {
        let bpe = try BPETrainer.train(corpus: Self.mixedText, vocabularySize: 300)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(bpe.tokenizerJSON().utf8)) as? [String: Any])
        #expect(json["normalizer"] is NSNull)
        let model = try #require(json["model"] as? [String: Any])
        #expect(model["type"] as? String == "BPE" && model["ignore_merges"] as? Bool == true)
        #expect((model["vocab"] as? [String: Any])?.count == bpe.tokens.count)
        #expect((model["merges"] as? [[String]])?.count == bpe.merges.count)
        let post = try #require(json["post_processor"] as? [String: Any])
        let processors = try #require(post["processors"] as? [[String: Any]])
        #expect(processors.map { $0["type"] as? String } == ["ByteLevel", "TemplateProcessing"])
        let added = try #require(json["added_tokens"] as? [[String: Any]])
        #expect(added.count == 16 && added.first?["content"] as? String == "<|begin_of_text|>")
        let config = try #require(try JSONSerialization.jsonObject(with: Data(bpe.tokenizerConfigJSON().utf8)) as? [String: Any])
        #expect(config["bos_token"] as? String == "<|begin_of_text|>" && (config["added_tokens_decoder"] as? [String: Any])?.count == 16)
    }
}
