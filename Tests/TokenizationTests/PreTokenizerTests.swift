import Testing
@testable import Tokenization

/// The pieces the scanner cuts `text` into.
private func pieces(_ text: String) -> [String] {
    var text = text
    var result: [String] = []
    text.withUTF8 { bytes in
        Llama3PreTokenizer.forEachPiece(in: bytes) { range in
            result.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self))
        }
    }
    return result
}

@Test("Contractions split off in any case, and long s counts as s")
func contractions() {
    #expect(pieces("I'M he'S they'LL we'Ve") == ["I", "'M", " he", "'S", " they", "'LL", " we", "'Ve"])
    #expect(pieces("'ſt 'sup 'x") == ["'ſ", "t", " '", "sup", " '", "x"])
    #expect(pieces("'sup") == ["'s", "up"])
}

@Test("Numbers split in threes and punctuation keeps one leading space and trailing newlines")
func numbersAndPunctuation() {
    #expect(pieces("1234567 x") == ["123", "456", "7", " x"])
    #expect(pieces("a ... !?\n\nb") == ["a", " ...", " !?\n\n", "b"])
}

@Test("Whitespace runs leave their last space to the following word and end at the last newline")
func whitespaceRuns() {
    #expect(pieces("a    b") == ["a", "   ", " b"])
    #expect(pieces("a \n \n  b") == ["a", " \n \n", " ", " b"])
    #expect(pieces("a\t!") == ["a", "\t", "!"])
    #expect(pieces("x   ") == ["x", "   "])
    #expect(pieces("\u{3000}word\u{00A0}\u{00A0}w") == ["\u{3000}word", "\u{00A0}", "\u{00A0}w"])
}

@Test("Special tokens are found in text only when allowed, and look-alikes stay text", .needsSharedTokenizer)
func specialTokensInText() {
    let tokenizer = ReferenceTokenizers.fromModel
    #expect(tokenizer.encode("<|image|>") == [128_256])
    #expect(tokenizer.encode("a<|eot_id|>b<|begin_of_text|>") == [64, 128_009, 65, 128_000])
    #expect(!tokenizer.encode("<|image|>", allowSpecial: false).contains(128_256))
    #expect(tokenizer.decode(tokenizer.encode("<|image|>", allowSpecial: false)) == "<|image|>")
    #expect(!tokenizer.encode("<|foo|><|eot_id|<|reserved_special_token_251|>").contains { $0 >= 128_000 })
}

@Test("Invalid UTF-8 from a partial token decodes to U+FFFD", .needsSharedTokenizer)
func lossyDecoding() {
    let tokenizer = ReferenceTokenizers.fromModel
    let ids = tokenizer.encode("😀")
    #expect(tokenizer.decode(ids) == "😀")
    #expect(tokenizer.decode(Array(ids.dropLast())).unicodeScalars.allSatisfy { $0 == "\u{FFFD}" })
}

@Test("Empty text encodes to no ids, and batch encoding matches one-by-one encoding", .needsSharedTokenizer)
func emptyAndBatch() {
    let tokenizer = ReferenceTokenizers.fromModel
    #expect(tokenizer.encode("").isEmpty)
    #expect(tokenizer.decode([]) == "")
    let texts = ["Hello world", "", "<|eot_id|>x", "  \n\t"]
    #expect(tokenizer.encode(texts) == texts.map { tokenizer.encode($0) })
}
