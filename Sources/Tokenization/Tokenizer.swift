import Foundation

/// A byte-level BPE tokenizer with the Llama 3 pre-tokenizer, loaded from a Hugging Face
/// `tokenizer.json` or from Meta's tiktoken `tokenizer.model`.
///
/// ```swift
/// let tokenizer = try Tokenizer(contentsOf: URL(fileURLWithPath: "tokenizer.model"),
///                               extraSpecialTokens: ["<|image|>": 128256])
/// let ids = tokenizer.encode("<|image|>Describe this.")   // [128256, 75885, 420, 13]
/// tokenizer.decode(ids)                                   // "<|image|>Describe this."
/// ```
///
/// `encode(_:)` adds nothing (no `<|begin_of_text|>`); `encode(_:addingSpecialTokens:)` adds what the
/// tokenizer files say (``specialTokenTemplate``), and the chat format adds the tokens a model expects.
/// A `Tokenizer` is immutable, so one value can encode from many threads at once.
public struct Tokenizer: Sendable {
    let tokens: TokenByteTable
    let merges: MergeTable
    /// `byteIds[b]` is the token of the single byte `b`.
    let byteIds: [Int32]
    /// Hugging Face's `ignore_merges` (always on for tiktoken): a piece that is itself a token is
    /// emitted as that token without merging, even when merging its bytes would give other tokens.
    let ignoreMerges: Bool
    let specials: SpecialTokenMatcher
    /// What ``encode(_:addingSpecialTokens:allowSpecial:)`` puts around a text, read from the
    /// tokenizer files as transformers reads it.
    public internal(set) var specialTokenTemplate: SpecialTokenTemplate
    /// True for a `tokenizer.json`, whose `post_processor` decides ``specialTokenTemplate`` whatever
    /// `tokenizer_config.json` says.
    let hasPostProcessorFile: Bool

    /// One more than the largest token id (including special tokens).
    public var vocabularySize: Int { tokens.count }

    /// The special tokens this tokenizer recognises in text, by their text.
    public var specialTokens: [String: Int] { specials.idsByText }

    /// The id of a special token such as `<|eot_id|>`, or nil when it is not one.
    public func specialTokenID(_ text: String) -> Int? { specials.idsByText[text] }

    /// The bytes token `id` stands for, or nil when `id` is not a token.
    public func bytes(ofToken id: Int) -> [UInt8]? {
        guard id >= 0, id < tokens.count, tokens.byteCount(of: id) > 0 else { return nil }
        return Array(tokens.bytes(of: id))
    }

    // MARK: - Encoding

    /// The token ids of `text`.
    ///
    /// - Parameters:
    ///   - text: Any string; no normalisation is applied.
    ///   - allowSpecial: When true (the default), special-token text such as `<|eot_id|>` becomes its
    ///     id. When false it is encoded as ordinary text, as user-supplied text should be.
    public func encode(_ text: String, allowSpecial: Bool = true) -> [Int] {
        encodeToInt32(text, allowSpecial: allowSpecial).map(Int.init)
    }

    /// The token ids of `text` with the tokenizer's special tokens around it when
    /// `addingSpecialTokens` is true: transformers' `tokenizer(text, add_special_tokens=...)`.
    ///
    /// Which tokens those are is the tokenizer files' decision (``specialTokenTemplate``): Llama
    /// 3.1's `tokenizer.json` prepends `<|begin_of_text|>`, the Llama 3.0 file adds nothing.
    public func encode(_ text: String, addingSpecialTokens: Bool, allowSpecial: Bool = true) -> [Int] {
        let ids = encode(text, allowSpecial: allowSpecial)
        return addingSpecialTokens ? specialTokenTemplate.apply(to: ids) : ids
    }

    /// `encode(_:allowSpecial:)` for many strings.
    public func encode(_ texts: [String], allowSpecial: Bool = true) -> [[Int]] {
        var state = EncoderState()
        return texts.map { text in
            var output: [Int32] = []
            encode(text, allowSpecial: allowSpecial, state: &state, into: &output)
            return output.map(Int.init)
        }
    }

    func encodeToInt32(_ text: String, allowSpecial: Bool) -> [Int32] {
        var state = EncoderState()
        var output: [Int32] = []
        encode(text, allowSpecial: allowSpecial, state: &state, into: &output)
        return output
    }

    /// Scratch space reused across pieces and strings.
    struct EncoderState {
        var merger = BytePairMerger()
    }

    func encode(_ text: String, allowSpecial: Bool, state: inout EncoderState, into output: inout [Int32]) {
        var text = text
        output.reserveCapacity(output.count + text.utf8.count / 3)
        text.withUTF8 { bytes in
            var start = 0
            if allowSpecial && !specials.isEmpty {
                while let (range, id) = specials.firstMatch(in: bytes, from: start) {
                    encodeOrdinary(UnsafeBufferPointer(rebasing: bytes[start..<range.lowerBound]), state: &state,
                                   into: &output)
                    output.append(id)
                    start = range.upperBound
                }
            }
            encodeOrdinary(UnsafeBufferPointer(rebasing: bytes[start...]), state: &state, into: &output)
        }
    }

    /// Text with no special tokens in it: pre-tokenize, then look up or merge each piece.
    private func encodeOrdinary(_ text: UnsafeBufferPointer<UInt8>, state: inout EncoderState,
                                into output: inout [Int32]) {
        guard !text.isEmpty else { return }
        Llama3PreTokenizer.forEachPiece(in: text) { range in
            let piece = UnsafeBufferPointer(rebasing: text[range])
            if piece.count == 1 {
                output.append(byteIds[Int(piece[0])])
            } else if ignoreMerges, let id = tokens.id(of: piece) {
                output.append(id)
            } else {
                state.merger.merge(piece, byteIds: byteIds, merges: merges, into: &output)
            }
        }
    }

    // MARK: - Decoding

    /// The text of `ids`: their bytes joined and read as UTF-8, each invalid sequence replaced by
    /// U+FFFD as Hugging Face's byte-level decoder does. Ids that are not tokens are skipped.
    ///
    /// - Parameter skipSpecialTokens: Leave out special tokens instead of writing their text.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids where id >= 0 && id < tokens.count {
            if skipSpecialTokens && specials.isSpecial(Int32(id)) { continue }
            bytes.append(contentsOf: tokens.bytes(of: id))
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Finds special-token text (`<|eot_id|>`) in UTF-8 bytes: the leftmost match, the longest one
/// there, as Hugging Face's added-token splitter does.
struct SpecialTokenMatcher: Sendable {
    let idsByText: [String: Int]
    /// Candidates by first byte, longest first.
    private let candidates: [[(bytes: [UInt8], id: Int32)]]
    private let specialIds: Set<Int32>

    init(_ idsByText: [String: Int]) {
        self.idsByText = idsByText
        var candidates = [[(bytes: [UInt8], id: Int32)]](repeating: [], count: 256)
        for (text, id) in idsByText where !text.isEmpty {
            let bytes = Array(text.utf8)
            candidates[Int(bytes[0])].append((bytes, Int32(id)))
        }
        for b in 0..<256 { candidates[b].sort { $0.bytes.count > $1.bytes.count } }
        self.candidates = candidates
        specialIds = Set(idsByText.values.map { Int32($0) })
    }

    var isEmpty: Bool { idsByText.isEmpty }

    func isSpecial(_ id: Int32) -> Bool { specialIds.contains(id) }

    func firstMatch(in text: UnsafeBufferPointer<UInt8>, from start: Int) -> (Range<Int>, Int32)? {
        var i = start
        while i < text.count {
            let options = candidates[Int(text[i])]
            if !options.isEmpty {
                for option in options where option.bytes.count <= text.count - i {
                    var equal = true
                    for k in 1..<option.bytes.count where text[i + k] != option.bytes[k] {
                        equal = false
                        break
                    }
                    if equal { return (i..<(i + option.bytes.count), option.id) }
                }
            }
            i += 1
        }
        return nil
    }
}
