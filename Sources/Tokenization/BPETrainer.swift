// Training a byte-level BPE vocabulary the way Llama 3's was built: text split by the Llama 3
// pre-tokenizer, then the most frequent adjacent pair merged until the vocabulary is full.

/// A byte-level BPE vocabulary learned from a corpus: 256 byte tokens, the merges in the order
/// they were learned, then Llama 3's special tokens.
///
/// ```swift
/// let bpe = try BPETrainer.train(corpus: text, vocabularySize: 1024)
/// try bpe.tokenizerJSON()        // a Hugging Face tokenizer.json, Llama 3's layout
/// let tokenizer = try bpe.tokenizer()
/// ```
public struct TrainedBPE: Sendable {
    /// The bytes of every ordinary token, by id: 256 single bytes (numbered in the order of their
    /// byte-level spellings, so `!` is 0 as in Llama 3) and then one token per new merge result.
    public let tokens: [[UInt8]]
    /// Merges in rank order: the ids of the left and right token and of their concatenation.
    public let merges: [(left: Int, right: Int, merged: Int)]
    /// Special tokens and their ids, ascending from `tokens.count`.
    public let specialTokens: [(text: String, id: Int)]

    /// Every id: ordinary tokens plus special tokens.
    public var vocabularySize: Int { tokens.count + specialTokens.count }

    /// The id of a special token.
    public func specialTokenID(_ text: String) -> Int? { specialTokens.first { $0.text == text }?.id }

    /// Loads the vocabulary as VLMKit's tokenizer (through its `tokenizer.json`, so what is written
    /// is what is used).
    public func tokenizer() throws -> Tokenizer {
        try Tokenizer(huggingFaceJSON: Array(tokenizerJSON().utf8), source: "trained tokenizer.json")
    }
}

/// Learns byte-level BPE merges from text.
public enum BPETrainer {
    /// Llama 3.1's first eleven special tokens, in its order; ``train(corpus:vocabularySize:specialTokenCount:)``
    /// fills the rest with `<|reserved_special_token_N|>` continuing Llama 3.1's numbering.
    public static let llama3SpecialTokens = [
        "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
        "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
    ]

    /// The special tokens for a count of at least 11.
    public static func specialTokens(count: Int) -> [String] {
        llama3SpecialTokens + (0..<max(0, count - llama3SpecialTokens.count)).map { "<|reserved_special_token_\($0 + 3)|>" }
    }

    /// Trains a vocabulary of `vocabularySize` ids in all: 256 bytes, `vocabularySize − 256 −
    /// specialTokenCount` merges, and the special tokens.
    ///
    /// The corpus is split into pieces by the Llama 3 pre-tokenizer; merges never cross pieces.
    /// Each step merges the adjacent pair with the highest count over all pieces (weighted by how
    /// often each piece occurs), replacing its occurrences left to right without overlap. **Ties**
    /// go to the pair whose left token has the smaller id, then whose right token has the smaller
    /// id — so older tokens win and the result does not depend on hashing or iteration order.
    /// Training stops early, with a smaller vocabulary, when every piece is a single token.
    ///
    /// - Throws: `TokenizerFileError` when `vocabularySize` cannot hold the bytes and special tokens.
    public static func train(corpus: String, vocabularySize: Int, specialTokenCount: Int = 16) throws -> TrainedBPE {
        let specials = specialTokens(count: max(specialTokenCount, llama3SpecialTokens.count))
        let mergeBudget = vocabularySize - 256 - specials.count
        guard mergeBudget >= 0 else {
            throw TokenizerFileError(source: "BPE trainer", reason: "a vocabulary of \(vocabularySize) cannot hold the 256 bytes "
                                     + "and \(specials.count) special tokens (at least \(256 + specials.count) is needed)")
        }
        var words = WordCounts(corpus: corpus)
        var tokens = ByteLevelAlphabet.bytesInSpellingOrder.map { [$0] }
        var idsByBytes = Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($0.element, $0.offset) })
        var merges: [(left: Int, right: Int, merged: Int)] = []
        while tokens.count < 256 + mergeBudget, let (left, right) = words.bestPair() {
            let bytes = tokens[left] + tokens[right]
            let merged: Int
            if let existing = idsByBytes[bytes] {
                merged = existing
            } else {
                merged = tokens.count
                tokens.append(bytes)
                idsByBytes[bytes] = merged
            }
            merges.append((left, right, merged))
            words.merge(left, right, into: merged)
        }
        let first = tokens.count
        return TrainedBPE(tokens: tokens, merges: merges,
                          specialTokens: specials.enumerated().map { ($0.element, first + $0.offset) })
    }
}

/// The distinct pieces of a corpus as token sequences with counts, and the counts of adjacent
/// pairs, kept current as merges are applied.
private struct WordCounts {
    private var symbols: [[Int32]] = []
    private var counts: [Int] = []
    private var pairCounts: [UInt64: Int] = [:]
    /// Pieces that contained the pair at some point (may be stale; merging checks).
    private var pairWords: [UInt64: [Int32]] = [:]
    private var heap = PairHeap()

    init(corpus: String) {
        var pieceCounts: [[UInt8]: Int] = [:]
        var text = corpus
        text.withUTF8 { bytes in
            Llama3PreTokenizer.forEachPiece(in: bytes) { range in
                pieceCounts[Array(bytes[range]), default: 0] += 1
            }
        }
        var idOfByte = [Int32](repeating: 0, count: 256)
        for (id, byte) in ByteLevelAlphabet.bytesInSpellingOrder.enumerated() { idOfByte[Int(byte)] = Int32(id) }
        // Sorted so that word numbering, and with it everything after, is fixed.
        for (piece, count) in pieceCounts.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            let word = Int32(symbols.count)
            symbols.append(piece.map { idOfByte[Int($0)] })
            counts.append(count)
            add(word)
        }
        for (key, count) in pairCounts { heap.push(count: count, key: key) }
    }

    private static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }

    /// Adds word `w`'s pairs to the counts (pushing changed counts only after `init`).
    private mutating func add(_ w: Int32, push: Bool = false) {
        let word = symbols[Int(w)], count = counts[Int(w)]
        guard word.count > 1 else { return }
        for k in 0..<(word.count - 1) {
            let key = Self.key(word[k], word[k + 1])
            pairCounts[key, default: 0] += count
            pairWords[key, default: []].append(w)
            if push { heap.push(count: pairCounts[key]!, key: key) }
        }
    }

    private mutating func remove(_ w: Int32) {
        let word = symbols[Int(w)], count = counts[Int(w)]
        guard word.count > 1 else { return }
        for k in 0..<(word.count - 1) {
            let key = Self.key(word[k], word[k + 1])
            let left = pairCounts[key]! - count
            if left == 0 { pairCounts[key] = nil } else { pairCounts[key] = left; heap.push(count: left, key: key) }
        }
    }

    /// The pair to merge next, or nil when no piece has two tokens left.
    mutating func bestPair() -> (Int, Int)? {
        while let (count, key) = heap.top() {
            if pairCounts[key] == count { return (Int(key >> 32), Int(key & 0xFFFF_FFFF)) }
            heap.pop()
        }
        return nil
    }

    /// Replaces every occurrence of `left right` by `merged`, left to right without overlap.
    mutating func merge(_ left: Int, _ right: Int, into merged: Int) {
        let key = Self.key(Int32(left), Int32(right))
        var affected = pairWords[key] ?? []
        pairWords[key] = nil
        affected.sort()
        var previous: Int32 = -1
        for w in affected where w != previous {
            previous = w
            let word = symbols[Int(w)]
            var rebuilt: [Int32] = []
            rebuilt.reserveCapacity(word.count)
            var k = 0, changed = false
            while k < word.count {
                if k + 1 < word.count, word[k] == Int32(left), word[k + 1] == Int32(right) {
                    rebuilt.append(Int32(merged))
                    k += 2
                    changed = true
                } else {
                    rebuilt.append(word[k])
                    k += 1
                }
            }
            guard changed else { continue }
            remove(w)
            symbols[Int(w)] = rebuilt
            add(w, push: true)
        }
        // The merged pair has no occurrences left; drop any stale count.
        pairCounts[key] = nil
    }
}

/// A binary max-heap of (count, pair key): highest count first, then smallest key (left id, then
/// right id). Entries go stale when counts change; the reader checks them against the live counts.
private struct PairHeap {
    private var entries: [(count: Int, key: UInt64)] = []

    private static func before(_ a: (count: Int, key: UInt64), _ b: (count: Int, key: UInt64)) -> Bool {
        a.count != b.count ? a.count > b.count : a.key < b.key
    }

    func top() -> (Int, UInt64)? { entries.first.map { ($0.count, $0.key) } }

    mutating func push(count: Int, key: UInt64) {
        entries.append((count, key))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.before(entries[child], entries[parent]) else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() {
        let last = entries.removeLast()
        guard !entries.isEmpty else { return }
        entries[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var best = parent
            if left < entries.count, Self.before(entries[left], entries[best]) { best = left }
            if right < entries.count, Self.before(entries[right], entries[best]) { best = right }
            if best == parent { break }
            entries.swapAt(parent, best)
            parent = best
        }
    }
}
