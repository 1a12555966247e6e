import ArgumentParser
import Checkpoint
import Foundation
import Tokenization

/// `vlm tokenizer …`: make tokenizers.
struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Make tokenizers.",
        subcommands: [Train.self])

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "train",
            abstract: "Train a byte-level BPE tokenizer (Llama 3's pre-tokenizer and special tokens) on a text file.",
            discussion: """
                Writes tokenizer.json and tokenizer_config.json in Hugging Face's Llama 3 layout. The vocabulary \
                size counts everything: 256 bytes, the merges, then the special tokens. Example:
                  vlm tokenizer train --corpus data/world/corpus.txt --vocab-size 1024 --out base/tokenizer
                """)

        @Option(help: "A UTF-8 text file to learn from.")
        var corpus: String

        @Option(help: "Ids in all: 256 bytes + merges + special tokens.")
        var vocabSize: Int

        @Option(help: "Special tokens (at least 11: Llama 3.1's; the rest are reserved).")
        var specialTokens: Int = 16

        @Option(help: "The folder to write (created if needed).")
        var out: String

        func validate() throws {
            guard vocabSize >= 256 + max(11, specialTokens) else {
                throw ValidationError("--vocab-size \(vocabSize) cannot hold the 256 bytes and \(max(11, specialTokens)) special tokens")
            }
        }

        func run() throws {
            let text: String
            do { text = try String(contentsOfFile: corpus, encoding: .utf8) } catch {
                throw CommandFailure("\(corpus): cannot read as UTF-8 text (\(error.localizedDescription))")
            }
            let start = Date()
            let bpe = try BPETrainer.train(corpus: text, vocabularySize: vocabSize, specialTokenCount: specialTokens)
            try writeTokenizerFiles(bpe, to: URL(fileURLWithPath: out))
            let note = bpe.vocabularySize < vocabSize ? " (the corpus ran out of pairs before \(vocabSize))" : ""
            print("wrote \(out)/tokenizer.json: \(bpe.vocabularySize) ids\(note): 256 bytes, \(bpe.merges.count) merges, "
                  + "\(bpe.specialTokens.count) special tokens from \(bpe.specialTokens[0].id), "
                  + "in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        }
    }
}

/// Writes a trained tokenizer's `tokenizer.json` and `tokenizer_config.json` into `folder`
/// (created if needed), each atomically.
func writeTokenizerFiles(_ bpe: TrainedBPE, to folder: URL) throws {
    do {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try AtomicFile.write(Data(bpe.tokenizerJSON().utf8), to: folder.appendingPathComponent("tokenizer.json"))
        try AtomicFile.write(Data(bpe.tokenizerConfigJSON().utf8), to: folder.appendingPathComponent("tokenizer_config.json"))
    } catch {
        throw CommandFailure("\(folder.path): cannot write the tokenizer (\(error))")
    }
}
