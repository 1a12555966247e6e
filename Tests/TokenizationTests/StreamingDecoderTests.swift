import Foundation
import Testing
import _TestSupport
@testable import Tokenization

/// Streamed decoding (what `vlm generate` prints token by token) against decoding everything at once.
@Suite("Streaming decoding", .enabled(if: Fixtures.hasSharedReference("llama3-tokenizer/tokenizer.model"),
                                      Comment(rawValue: Fixtures.sharedReferenceNote("llama3-tokenizer/tokenizer.model"))))
struct StreamingDecoderTests {
    static let texts = [
        "नमस्ते दुनिया! हिन्दी में लिखा गया यह वाक्य संयुक्ताक्षरों, मात्राओं और अनुस्वार (ं) से भरा है: क्षत्रिय, ज्ञान, श्रृंगार।",
        "สวัสดีชาวโลก ภาษาไทยมีสระและวรรณยุกต์ที่ซ้อนกัน เช่น ที่นี่ น้ำ กี่ ปี่ ผู้ใหญ่",
        "مرحبا بالعالم، هذه جملة عربية بالتشكيل: الْعَرَبِيَّةُ لُغَةٌ جَمِيلَةٌ",
        "e\u{301}e\u{301}e\u{301} Zalgo: Z\u{336}\u{321}a\u{337}l\u{334}g\u{335}o\u{338} 🦙🧑🏽‍🚀 👩‍👩‍👧 🇺🇳",
    ]

    func tokenizer() throws -> Tokenizer {
        try Tokenizer(contentsOf: Fixtures.sharedReference("llama3-tokenizer/tokenizer.model"))
    }

    @Test("Token-by-token output equals the full decode for Hindi, Thai, Arabic and combining marks",
          arguments: texts)
    func streamEqualsFullDecode(text: String) throws {
        let tokenizer = try tokenizer()
        let ids = tokenizer.encode(text)
        #expect(ids.count > 10)
        var stream = StreamingDecoder(tokenizer: tokenizer)
        var streamed: [UInt8] = []
        var printedBeforeEnd = 0
        for id in ids {
            streamed += stream.append(id)
            printedBeforeEnd = streamed.count
        }
        streamed += stream.finish()
        #expect(streamed == Array(tokenizer.decode(ids).utf8))
        #expect(streamed == Array(text.utf8))
        // Nothing is held back longer than one incomplete character.
        #expect(streamed.count - printedBeforeEnd <= 3)
    }

    /// The id of the single-byte token for `byte`.
    func byteToken(_ byte: UInt8, in tokenizer: Tokenizer) -> Int {
        Int([byte].withUnsafeBufferPointer { tokenizer.tokens.id(of: $0) }!)
    }

    /// Streams `ids`, returning each call's output.
    func chunks(_ ids: [Int], tokenizer: Tokenizer) -> [[UInt8]] {
        var stream = StreamingDecoder(tokenizer: tokenizer)
        return ids.map { stream.append($0) } + [stream.finish()]
    }

    @Test("A character split into single-byte tokens is held back until complete, then printed whole")
    func splitCharacterIsHeldBack() throws {
        let tokenizer = try tokenizer()
        let ids = tokenizer.encode("a") + Array("🦙".utf8).map { byteToken($0, in: tokenizer) } + tokenizer.encode("b")
        let out = chunks(ids, tokenizer: tokenizer)
        #expect(out == [Array("a".utf8), [], [], [], Array("🦙".utf8), Array("b".utf8), []])
    }

    @Test("Invalid byte sequences come out as U+FFFD exactly where the full decode puts them",
          arguments: [[0xE0, 0x80, 0x41], [0xF0, 0x9F, 0xA6], [0xC3], [0xED, 0xA0, 0x80, 0x42], [0xF4, 0x90, 0x80, 0x80],
                      [0xF0, 0x9F, 0xA6, 0xC3, 0xA9], [0x80, 0xBF, 0xE2, 0x82], [0xFF, 0xC0, 0xAF]] as [[UInt8]])
    func invalidSequences(bytes: [UInt8]) throws {
        let tokenizer = try tokenizer()
        let ids = bytes.map { byteToken($0, in: tokenizer) }
        let out = chunks(ids, tokenizer: tokenizer)
        #expect(Array(out.joined()) == Array(tokenizer.decode(ids).utf8))
        #expect(out.allSatisfy { String(validating: $0, as: UTF8.self) != nil }, "every chunk is whole UTF-8")
    }

    @Test("Only a possible start of a character is held back")
    func incompleteSuffix() {
        #expect(StreamingDecoder.incompleteSuffixLength([0x41, 0xF0, 0x9F, 0xA6]) == 3)
        #expect(StreamingDecoder.incompleteSuffixLength([0x41, 0xE0, 0x80]) == 0, "E0 80 can never be valid")
        #expect(StreamingDecoder.incompleteSuffixLength([0xC3]) == 1)
        #expect(StreamingDecoder.incompleteSuffixLength([0xC3, 0xA9]) == 0)
        #expect(StreamingDecoder.incompleteSuffixLength([0xF4, 0x90]) == 0, "beyond U+10FFFF")
        #expect(StreamingDecoder.incompleteSuffixLength([]) == 0)
    }
}
