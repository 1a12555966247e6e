/// Decodes tokens as they arrive, one at a time, into UTF-8 that can be printed at once.
///
/// A character may span tokens (the byte-level vocabulary splits Hindi, Thai, Arabic, emoji…), so
/// the bytes of an incomplete character at the end are held back until the next token completes
/// it. Everything is compared in bytes, never in characters: a combining mark that arrives later
/// merges with the character before it into one grapheme, which a character count would see as no
/// progress. The concatenation of every ``append(_:)`` and the final ``finish()`` is exactly the
/// UTF-8 of ``Tokenizer/decode(_:skipSpecialTokens:)`` of all the tokens.
///
/// ```swift
/// var stream = StreamingDecoder(tokenizer: tokenizer)
/// for id in ids { output.write(stream.append(id)) }
/// output.write(stream.finish())
/// ```
public struct StreamingDecoder: Sendable {
    public let tokenizer: Tokenizer
    private var pending: [UInt8] = []

    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    /// Adds token `id` (ids that are not tokens add nothing, as in decoding) and returns the
    /// UTF-8 bytes that are now final: complete characters, and U+FFFD for each invalid sequence.
    public mutating func append(_ id: Int) -> [UInt8] {
        if id >= 0 && id < tokenizer.tokens.count { pending.append(contentsOf: tokenizer.tokens.bytes(of: id)) }
        let ready = pending.count - Self.incompleteSuffixLength(pending)
        guard ready > 0 else { return [] }
        let text = String(decoding: pending[..<ready], as: UTF8.self)
        pending.removeFirst(ready)
        return Array(text.utf8)
    }

    /// The bytes held back for an incomplete character, each invalid sequence as U+FFFD, and an
    /// empty buffer for the next stream.
    public mutating func finish() -> [UInt8] {
        defer { pending = [] }
        return pending.isEmpty ? [] : Array(String(decoding: pending, as: UTF8.self).utf8)
    }

    /// How many bytes at the end of `bytes` start a UTF-8 sequence that later bytes could still
    /// complete (0 when the end is complete or can never become valid).
    static func incompleteSuffixLength(_ bytes: [UInt8]) -> Int {
        for length in 1...min(3, max(bytes.count, 1)) where length <= bytes.count {
            let lead = bytes[bytes.count - length]
            if (0x80...0xBF).contains(lead) { continue }    // a continuation byte: look further back
            let needed: Int
            switch lead {
            case 0xC2...0xDF: needed = 2
            case 0xE0...0xEF: needed = 3
            case 0xF0...0xF4: needed = 4
            default: return 0
            }
            guard length < needed else { return 0 }
            let following = bytes[(bytes.count - length + 1)...]
            for (offset, byte) in following.enumerated() {
                var allowed: ClosedRange<UInt8> = 0x80...0xBF
                if offset == 0 {
                    switch lead {
                    case 0xE0: allowed = 0xA0...0xBF
                    case 0xED: allowed = 0x80...0x9F
                    case 0xF0: allowed = 0x90...0xBF
                    case 0xF4: allowed = 0x80...0x8F
                    default: break
                    }
                }
                guard allowed.contains(byte) else { return 0 }
            }
            return length
        }
        return 0
    }
}
