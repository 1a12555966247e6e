import ArgumentParser
import Checkpoint
import Foundation
import Models
import TensorCore
import Tokenization

/// `vlm generate`: text continuation or chat replies, streamed to standard output.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt with a KV cache, streaming tokens as they come.")

    @Option(help: "A Hugging Face checkpoint directory (config.json, safetensors, tokenizer).")
    var model: String

    @Option(help: "The prompt text.")
    var prompt: String

    @Flag(help: "Wrap the prompt as a user message in the Llama 3 chat format and answer as the assistant.")
    var chat = false

    @Option(help: "Tokenizer file (tokenizer.json, tokenizer.json.zst or tokenizer.model); default: found in --model.")
    var tokenizer: String?

    @Option(help: "Maximum number of new tokens.")
    var maxTokens = 128

    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature = 0.0

    @Option(help: "Nucleus sampling: keep the most likely tokens whose probability reaches P.")
    var topP = 1.0

    @Option(help: "Keep only the K most likely tokens (0: all).")
    var topK = 0

    @Option(help: "Random seed for sampling.")
    var seed: UInt64 = 0

    func validate() throws {
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
    }

    func run() throws {
        let directory = URL(fileURLWithPath: model)
        let llama = try LlamaForCausalLM.load(directory: directory)
        let tokenizer = try loadTokenizer(path: try tokenizerPath(in: directory), extraSpecialTokens: [:])
        let generation = try? GenerationConfig.load(from: directory.appendingPathComponent("generation_config.json"))
        var stopTokens = Set(generation?.eosTokenIds ?? llama.config.eosTokenIds ?? [])
        let promptIds: [Int]
        if chat {
            let format = try Llama3ChatFormat(tokenizer: tokenizer)
            promptIds = try format.encode([ChatMessage(role: .user, text: prompt)], addGenerationPrompt: true).ids
            if let eot = tokenizer.specialTokenID("<|eot_id|>") { stopTokens.insert(eot) }
        } else {
            let bos = generation?.bosTokenId ?? llama.config.bosTokenId
            promptIds = (bos.map { [$0] } ?? []) + tokenizer.encode(prompt)
        }
        var produced: [Int] = []
        var printed = ""
        let options = SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed)
        let start = Date()
        _ = generate(with: llama, prompts: [promptIds], maxNewTokens: maxTokens, sampling: options,
                     stopTokens: stopTokens, padToken: generation?.padTokenId ?? 0) { step in
            guard let token = step[0] else { return true }
            if stopTokens.contains(token) { return true }
            produced.append(token)
            // Print only complete characters: a multi-byte character may span tokens.
            let text = tokenizer.decode(produced)
            if !text.hasSuffix("\u{FFFD}"), text.count > printed.count, text.hasPrefix(printed) {
                FileHandle.standardOutput.write(Data(text.dropFirst(printed.count).utf8))
                printed = text
            }
            return true
        }
        let seconds = Date().timeIntervalSince(start)
        print("")
        FileHandle.standardError.write(Data(String(format: "[%d prompt tokens, %d new tokens, %.2f s]\n",
                                                   promptIds.count, produced.count, seconds).utf8))
    }

    private func tokenizerPath(in directory: URL) throws -> String {
        if let tokenizer { return tokenizer }
        for name in ["tokenizer.json", "tokenizer.json.zst", "original/tokenizer.model", "tokenizer.model"] {
            let candidate = directory.appendingPathComponent(name).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        throw ValidationError("\(model): no tokenizer.json, tokenizer.json.zst or tokenizer.model; pass --tokenizer")
    }
}
