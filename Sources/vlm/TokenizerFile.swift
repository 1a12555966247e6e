import ArgumentParser
import Foundation
import Processing
import Tokenization

/// Loads a tokenizer for the command line: `tokenizer.json`, `tokenizer.json.zst` or tiktoken
/// `tokenizer.model`, with the `tokenizer_config.json` beside it, as transformers loads it.
func loadTokenizer(path: String, extraSpecialTokens: [String: Int]) throws -> Tokenizer {
    try requireFile(path)
    return try Tokenizer(checkpointFile: URL(fileURLWithPath: path), extraSpecialTokens: extraSpecialTokens)
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
