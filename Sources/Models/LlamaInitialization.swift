import Checkpoint
import Foundation
import Layers
import TensorCore

extension LlamaForCausalLM {
    /// Writes a freshly initialised Llama 3.1-architecture checkpoint (normal weights with standard
    /// deviation `initializerRange`, norms at 1) with the tokenizer files of `tokenizerDirectory`,
    /// and a `generation_config.json` whose stop ids are the tokenizer's `<|end_of_text|>`,
    /// `<|eom_id|>` and `<|eot_id|>` (those it has). The folder appears whole or not at all.
    ///
    /// `config.bosTokenId` and `eosTokenIds` are read from the tokenizer's special tokens when it
    /// has them. This is the "small base Llama" of the built-in world before it is trained.
    public static func initializeCheckpoint(config: LlamaConfig, seed: UInt64, initializerRange: Double = 0.02,
                                            tokenizerDirectory: URL, specialTokens: [String: Int], output: URL) throws {
        var config = config
        config.bosTokenId = specialTokens["<|begin_of_text|>"] ?? config.bosTokenId
        let stops = ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"].compactMap { specialTokens[$0] }
        if !stops.isEmpty { config.eosTokenIds = stops }
        let model = LlamaForCausalLM(config: config, factory: ParameterFactory(.random(seed: seed, standardDeviation: initializerRange)))
        let generation = GenerationConfig(bosTokenId: config.bosTokenId, eosTokenIds: config.eosTokenIds,
                                          padTokenId: specialTokens["<|finetune_right_pad_id|>"])
        try FileManager.default.createDirectory(at: output.deletingLastPathComponent(), withIntermediateDirectories: true)
        let temporary = try TemporarySibling.makeFolder(beside: output)
        defer { TemporarySibling.releaseFolder(temporary) }
        do {
            try model.save(to: temporary)
            try AtomicFile.write(try generation.jsonData(), to: temporary.appendingPathComponent(GenerationConfig.fileName))
            for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"] {
                let source = tokenizerDirectory.appendingPathComponent(name)
                guard let data = FileManager.default.contents(atPath: source.path) else { continue }
                try AtomicFile.write(data, to: temporary.appendingPathComponent(name))
            }
            if FileManager.default.fileExists(atPath: output.path) { try FileManager.default.removeItem(at: output) }
            try FileManager.default.moveItem(at: temporary, to: output)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
    }
}
