import Checkpoint
import Foundation
import Tokenization

extension Tokenizer {
    /// Loads a checkpoint's tokenizer file as transformers' `AutoTokenizer` loads the checkpoint:
    /// `tokenizer.json`, `tokenizer.json.zst` (decompressed here) or tiktoken `tokenizer.model`,
    /// together with the `tokenizer_config.json` beside it (or in the folder above `original/`),
    /// which decides the special tokens added around a text where the file leaves it open (see
    /// ``Tokenization/Tokenizer/configured(with:source:)``).
    ///
    /// - Parameters:
    ///   - file: The tokenizer file.
    ///   - extraSpecialTokens: Special tokens the file lacks, such as `["<|image|>": 128256]` for a
    ///     text model's tokenizer (a vision checkpoint written by VLMKit has it already).
    /// - Throws: `TokenizerFileError` naming the file and field.
    public init(checkpointFile file: URL, extraSpecialTokens: [String: Int] = [:]) throws {
        var tokenizer: Tokenizer
        if file.pathExtension == "zst" {
            let bytes = try Zstd.decompress(contentsOf: file)
            tokenizer = try Tokenizer(huggingFaceJSON: bytes, source: file.path, extraSpecialTokens: extraSpecialTokens)
        } else {
            tokenizer = try Tokenizer(contentsOf: file, extraSpecialTokens: extraSpecialTokens)
        }
        var folder = file.deletingLastPathComponent()
        if folder.lastPathComponent == "original" { folder = folder.deletingLastPathComponent() }
        let configURL = folder.appendingPathComponent(TokenizerConfiguration.fileName)
        if FileManager.default.fileExists(atPath: configURL.path) {
            let bytes: Data
            do { bytes = try Data(contentsOf: configURL) } catch {
                throw TokenizerFileError(source: configURL.path, reason: "cannot be read (\(error.localizedDescription))")
            }
            let config = try TokenizerConfiguration(json: [UInt8](bytes), source: configURL.path)
            tokenizer = try tokenizer.configured(with: config, source: configURL.path)
        }
        self = tokenizer
    }
}
