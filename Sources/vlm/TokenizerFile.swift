import ArgumentParser
import Checkpoint
import Foundation
import Tokenization

/// Loads a tokenizer for the command line: `tokenizer.json`, `tokenizer.json.zst` (decompressed
/// here, because only the checkpoint code links zstd) or tiktoken `tokenizer.model`.
func loadTokenizer(path: String, extraSpecialTokens: [String: Int]) throws -> Tokenizer {
    try requireFile(path)
    let url = URL(fileURLWithPath: path)
    if url.pathExtension == "zst" {
        let bytes = try Zstd.decompress(contentsOf: url)
        return try Tokenizer(huggingFaceJSON: bytes, source: path, extraSpecialTokens: extraSpecialTokens)
    }
    return try Tokenizer(contentsOf: url, extraSpecialTokens: extraSpecialTokens)
}

/// Parses repeated `--special TEXT=ID` options.
func parseSpecialTokens(_ options: [String]) throws -> [String: Int] {
    var result: [String: Int] = [:]
    for option in options {
        guard let equals = option.lastIndex(of: "="), let id = Int(option[option.index(after: equals)...]),
              equals != option.startIndex
        else { throw ValidationError("--special \(option): expected TEXT=ID, e.g. <|image|>=128256") }
        result[String(option[..<equals])] = id
    }
    return result
}
