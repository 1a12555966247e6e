import ArgumentParser
import Checkpoint
import Foundation
import Tokenization

/// `vlm tokenize`: a JSON array of strings in, a JSON array of id arrays out.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode a JSON array of strings into a JSON array of token-id arrays.",
        discussion: """
            No <|begin_of_text|> is added. Special-token text such as <|eot_id|> becomes its id \
            unless --no-allow-special is given. Example:
              vlm tokenize --tokenizer tokenizer.model --special '<|image|>=128256' \\
                --input texts.json --out ids.json
            """)

    @Option(help: "tokenizer.json, tokenizer.json.zst or tiktoken tokenizer.model.")
    var tokenizer: String

    @Option(help: "A JSON file holding an array of strings ('-' reads standard input).")
    var input: String

    @Option(help: "Where to write the JSON array of id arrays (written atomically, through links; '-' is standard output).")
    var out: String

    @Option(help: "An extra special token TEXT=ID (repeatable), e.g. '<|image|>=128256'.")
    var special: [String] = []

    @Flag(inversion: .prefixedNo, help: "Recognise special-token text in the input.")
    var allowSpecial = true

    func validate() throws {
        _ = try parseSpecialTokens(special)
    }

    func run() throws {
        let tokenizer = try loadTokenizer(path: tokenizer, extraSpecialTokens: try parseSpecialTokens(special))
        let data = try readInput(input)
        guard let texts = try? JSONDecoder().decode([String].self, from: data) else {
            throw CommandFailure("\(input == "-" ? "standard input" : input): expected a JSON array of strings")
        }
        let ids = tokenizer.encode(texts, allowSpecial: allowSpecial)
        var json = "["
        json.reserveCapacity(ids.reduce(0) { $0 + $1.count * 7 } + 16)
        for (index, row) in ids.enumerated() {
            if index > 0 { json += ",\n" }
            json += "[" + row.map(String.init).joined(separator: ",") + "]"
        }
        json += "]\n"
        try AtomicFile.write(Data(json.utf8), to: outputURL(out))
    }
}
