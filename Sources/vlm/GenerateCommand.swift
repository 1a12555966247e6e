import ArgumentParser
import Checkpoint
import Foundation
import Media
import Models
import Processing
import TensorCore
import Tokenization

/// `vlm generate`: text continuation or chat replies, with images for mllama checkpoints, streamed
/// to standard output.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt (and images, for mllama models) with a KV cache, streaming tokens.")

    @Option(help: "A Hugging Face checkpoint directory (config.json, safetensors, tokenizer; preprocessor_config.json for images).")
    var model: String

    @Option(help: "The prompt text. With images, <|image|> marks where each goes (default: all before the text).")
    var prompt: String

    @Option(name: .customLong("image"), help: "An image (PNG or JPEG) for an mllama model; repeat for several.")
    var images: [String] = []

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

    @Option(help: "mllama only: 'meta' (text that sees no image gets no cross-attention, as Meta's reference) or 'huggingface' (transformers: only the MLP output is zeroed).")
    var crossAttentionMasking: ForwardCommand.MaskingOption = .meta

    func validate() throws {
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
    }

    func run() throws {
        let directory = URL(fileURLWithPath: model)
        let config = try ModelConfig.load(from: directory.appendingPathComponent("config.json"))
        let generation = try? GenerationConfig.load(from: directory.appendingPathComponent("generation_config.json"))
        let options = SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed)
        switch config {
        case .llama:
            guard images.isEmpty else { throw CommandFailure("\(model) is a text-only llama checkpoint: --image needs an mllama model") }
            let llama = try LlamaForCausalLM.load(directory: directory)
            let tokenizer = try loadTokenizer(path: try tokenizerPath(in: directory), extraSpecialTokens: [:])
            var stop = Set(generation?.eosTokenIds ?? llama.config.eosTokenIds ?? [])
            let ids = try promptIds(tokenizer: tokenizer, stop: &stop)
            stream(llama, prompt: ids, tokenizer: tokenizer, stop: stop, pad: generation?.padTokenId ?? 0, options: options)
        case .mllama(let mllamaConfig):
            let mllama = try MllamaForConditionalGeneration.load(directory: directory)
            mllama.crossAttentionMasking = crossAttentionMasking == .meta ? .meta : .huggingface
            let tokenizer = try loadTokenizer(path: try tokenizerPath(in: directory),
                                              extraSpecialTokens: ["<|image|>": mllamaConfig.imageTokenIndex])
            var stop = Set(generation?.eosTokenIds ?? mllamaConfig.textConfig.llama.eosTokenIds ?? [])
            let pad = generation?.padTokenId ?? 0
            let processorConfig = try MllamaImageProcessorConfig.load(
                from: directory.appendingPathComponent(MllamaImageProcessorConfig.fileName))
            let processor = try MllamaProcessor(imageProcessor: MllamaImageProcessor(config: processorConfig), tokenizer: tokenizer)
            if chat, let eot = tokenizer.specialTokenID("<|eot_id|>") { stop.insert(eot) }
            let ids = try mllamaPromptIds(prompt, imageCount: images.count, chat: chat, processor: processor)
            if images.isEmpty {
                stream(mllama, prompt: ids, tokenizer: tokenizer, stop: stop, pad: pad, options: options)
                return
            }
            let batch = try processor.process(tokenIDs: [ids], images: [try images.map { try loadImage(path: $0) }])
            guard let imageBatch = batch.images, let crossMask = batch.crossAttentionMask else {
                throw CommandFailure("the processor produced no image inputs")
            }
            let decoder = mllama.conditioned(pixelValues: imageBatch.pixelValues, aspectRatioIds: imageBatch.aspectRatioIDs,
                                             aspectRatioMask: imageBatch.aspectRatioMask, crossAttentionMask: crossMask)
            stream(decoder, prompt: batch.tokenIDs[0], tokenizer: tokenizer, stop: stop, pad: pad, options: options)
        default:
            throw CommandFailure("\(model): model_type '\(config.modelType)' is not supported by `vlm generate` yet")
        }
    }

    /// Token ids of a text model's prompt: the chat format, or the text with the special tokens
    /// the tokenizer files add (as transformers' `tokenizer(prompt)`).
    private func promptIds(tokenizer: Tokenizer, stop: inout Set<Int>) throws -> [Int] {
        guard chat else { return tokenizer.encode(prompt, addingSpecialTokens: true) }
        if let eot = tokenizer.specialTokenID("<|eot_id|>") { stop.insert(eot) }
        return try chatPromptIds(prompt, imageCount: 0, tokenizer: tokenizer)
    }

    /// Generates and prints complete characters as they arrive, then a summary on standard error.
    private func stream(_ decoder: some IncrementalDecoder, prompt ids: [Int], tokenizer: Tokenizer, stop: Set<Int>,
                        pad: Int, options: SamplingOptions) {
        var produced: [Int] = []
        var printed = ""
        let start = Date()
        _ = generate(with: decoder, prompts: [ids], maxNewTokens: maxTokens, sampling: options, stopTokens: stop,
                     padToken: pad) { step in
            guard let token = step[0], !stop.contains(token) else { return true }
            produced.append(token)
            // A multi-byte character may span tokens: print only once it is complete.
            let text = tokenizer.decode(produced)
            // Compared in bytes: a combining mark joins the previous Character, which would make
            // `text` stop having `printed` as a Character prefix.
            if !text.hasSuffix("\u{FFFD}"), text.utf8.count > printed.utf8.count, text.utf8.starts(with: printed.utf8) {
                FileHandle.standardOutput.write(Data(text.utf8.dropFirst(printed.utf8.count)))
                printed = text
            }
            return true
        }
        print("")
        FileHandle.standardError.write(Data(String(format: "[%d prompt tokens, %d new tokens, %.2f s]\n",
                                                   ids.count, produced.count, Date().timeIntervalSince(start)).utf8))
    }

    private func tokenizerPath(in directory: URL) throws -> String {
        if let tokenizer { return tokenizer }
        for name in ["tokenizer.json", "tokenizer.json.zst", "original/tokenizer.model", "tokenizer.model"] {
            let candidate = directory.appendingPathComponent(name).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        throw CommandFailure("\(model): no tokenizer.json, tokenizer.json.zst or tokenizer.model; pass --tokenizer")
    }
}
