import Foundation

// Reading Meta's tiktoken `tokenizer.model`: one "base64-token rank" pair per line. A token's rank is
// its id, and merging two adjacent tokens is allowed when their concatenation is itself a token,
// with that token's rank as the merge's rank.

extension Tokenizer {
    /// The 256 special tokens of Llama 3, ids 128000…128255, named as Meta's `tokenizer.py` names them.
    public static let llama3SpecialTokens: [String: Int] = {
        var names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                     "<|reserved_special_token_1|>", "<|reserved_special_token_2|>", "<|reserved_special_token_3|>",
                     "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"]
        names += (5..<251).map { "<|reserved_special_token_\($0)|>" }
        return Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, 128_000 + $0) })
    }()

    /// Loads Meta's tiktoken `tokenizer.model` with the Llama 3 pre-tokenizer.
    ///
    /// - Parameters:
    ///   - model: The file's bytes: lines of `base64 rank`.
    ///   - source: The name errors give for the file.
    ///   - specialTokens: The special tokens, by default Llama 3's 256.
    ///   - extraSpecialTokens: More special tokens, such as `["<|image|>": 128256]`.
    /// - Throws: `TokenizerFileError`, e.g. "tokenizer.model: line 17: bad base64 \"!!\"".
    public init(tiktokenModel model: [UInt8], source: String,
                specialTokens: [String: Int] = Tokenizer.llama3SpecialTokens,
                extraSpecialTokens: [String: Int] = [:]) throws {
        func failure(_ reason: String) -> TokenizerFileError { TokenizerFileError(source: source, reason: reason) }
        var tokenBytes: [[UInt8]?] = []
        var lineNumber = 0
        for line in model.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = line
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            if line.isEmpty { continue }
            let fields = line.split(separator: UInt8(ascii: " "))
            guard fields.count == 2 else {
                throw failure("line \(lineNumber): expected \"base64-token rank\", found \(fields.count) fields")
            }
            let encoded = String(decoding: fields[0], as: UTF8.self)
            guard let decoded = Data(base64Encoded: encoded), !decoded.isEmpty else {
                throw failure("line \(lineNumber): bad base64 \"\(encoded.prefix(40))\"")
            }
            guard let rank = Int(String(decoding: fields[1], as: UTF8.self)), rank >= 0, rank < 1 << 24 else {
                throw failure("line \(lineNumber): bad rank \"\(String(decoding: fields[1].prefix(20), as: UTF8.self))\"")
            }
            if rank >= tokenBytes.count { tokenBytes.append(contentsOf: repeatElement(nil, count: rank + 1 - tokenBytes.count)) }
            if tokenBytes[rank] != nil { throw failure("line \(lineNumber): rank \(rank) appears twice") }
            tokenBytes[rank] = [UInt8](decoded)
        }
        guard !tokenBytes.isEmpty else { throw failure("has no tokens") }

        // Every split of every token into two tokens is a merge with the whole token's rank.
        let lookup = TokenByteTable(tokens: tokenBytes)
        var merges = MergeTable(expectedCount: tokenBytes.count * 4)
        lookup.arena.withUnsafeBufferPointer { arena in
            for id in tokenBytes.indices {
                let start = Int(lookup.starts[id]), end = Int(lookup.starts[id + 1])
                guard end - start >= 2 else { continue }
                for split in (start + 1)..<end {
                    guard let left = lookup.id(of: UnsafeBufferPointer(rebasing: arena[start..<split])),
                          let right = lookup.id(of: UnsafeBufferPointer(rebasing: arena[split..<end]))
                    else { continue }
                    merges.insert(left: left, right: right, rank: UInt32(id), merged: Int32(id))
                }
            }
        }
        try self.init(tokenBytes: tokenBytes, merges: merges, ignoreMerges: true,
                      specialTokens: specialTokens.merging(extraSpecialTokens) { _, extra in extra }, source: source)
    }
}
