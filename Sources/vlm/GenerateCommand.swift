import ArgumentParser
import Checkpoint
import Foundation
import Media
import Models
import Processing
import TensorCore
import Tokenization

/// `vlm generate`: text continuation or chat replies, with images for mllama, llava and token-stream checkpoints, streamed
/// to standard output.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt (and images, for mllama, llava and vlmkit_token_stream models) with a KV cache, streaming tokens.")

    @Option(help: "A Hugging Face checkpoint directory (config.json, safetensors, tokenizer; preprocessor_config.json for images).")
    var model: String

    @Option(help: "The prompt text ('-': read it from standard input). With images, <|image|> (mllama, vlmkit_token_stream) or <image> (llava) marks where each goes (default: all before the text).")
    var prompt: String

    @Option(name: .customLong("image"), help: "An image (PNG or JPEG) for an mllama, llava or vlmkit_token_stream model; repeat for several.")
    var images: [String] = []

    @Flag(help: "Wrap the prompt as a user message in the Llama 3 chat format and answer as the assistant.")
    var chat = false

    @Option(help: "Tokenizer file (tokenizer.json, tokenizer.json.zst or tokenizer.model); default: found in --model.")
    var tokenizer: String?

    @Option(parsing: .unconditional, help: "Maximum number of new tokens (generation also stops at the model's maximum length).")
    var maxTokens = 128

    @Option(parsing: .unconditional, help: "Sampling temperature; 0 is greedy.")
    var temperature = 0.0

    @Option(parsing: .unconditional, help: "Nucleus sampling: keep the most likely tokens whose probability reaches P.")
    var topP = 1.0

    @Option(parsing: .unconditional, help: "Keep only the K most likely tokens (0: all).")
    var topK = 0

    @Option(help: "Random seed for sampling.")
    var seed: UInt64 = 0

    @Option(help: "mllama only: 'meta' (text that sees no image gets no cross-attention, as Meta's reference) or 'huggingface' (transformers: only the MLP output is zeroed).")
    var crossAttentionMasking: ForwardCommand.MaskingOption = .meta

    /// Collects the generated text instead of standard output, for an in-process caller (a test)
    /// that puts one in its thread's dictionary under ``TextSink/key``: only that thread's runs write
    /// to it, so parallel tests never read each other's output.
    final class TextSink: NSObject {
        static let key = "vlm.generate.textSink"
        private(set) var data = Data()
        func append(_ more: Data) { data.append(more) }
    }

    private func writeText(_ data: Data) {
        if let sink = Thread.current.threadDictionary[TextSink.key] as? TextSink { sink.append(data) }
        else {
            // Through C's stdout, flushed piece by piece so the text streams; a write that fails
            // (a full disk, a closed file) ends the command as any unwritable output does.
            data.withUnsafeBytes { _ = fwrite($0.baseAddress, 1, $0.count, stdout) }
            if fflush(stdout) != 0 { VLM.exitIfStandardOutputFailed() }
        }
    }

    func validate() throws {
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0 (0 keeps every token)") }
    }

    func run() throws {
        let prompt = try promptText()
        if images.isEmpty && (prompt.contains("<|image|>") || prompt.contains("<image>")) {
            throw CommandFailure("the prompt holds \(prompt.contains("<image>") ? "<image>" : "<|image|>") but no --image was given")
        }
        let directory = try modelFolder(model)
        let config = try ModelConfig.load(from: directory.appendingPathComponent("config.json"))
        let generation = try? GenerationConfig.load(from: directory.appendingPathComponent("generation_config.json"))
        let options = SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed)
        switch config {
        case .llama:
            guard images.isEmpty else { throw CommandFailure("\(model) is a text-only llama checkpoint: --image needs an mllama, llava or vlmkit_token_stream model") }
            let llama = try LlamaForCausalLM.load(directory: directory)
            let tokenizer = try loadTokenizer(path: try tokenizerPath(in: directory), extraSpecialTokens: [:])
            var stop = Set(generation?.eosTokenIds ?? llama.config.eosTokenIds ?? [])
            let ids = try promptIds(prompt, tokenizer: tokenizer, stop: &stop)
            try checkPrompt(ids, vocabulary: llama.config.vocabSize, maximumLength: llama.config.maxPositionEmbeddings)
            stream(llama, prompt: ids, tokenizer: tokenizer, stop: stop, pad: generation?.padTokenId ?? 0, options: options,
                   maximumLength: llama.config.maxPositionEmbeddings)
        case .mllama(let mllamaConfig):
            let mllama = try MllamaForConditionalGeneration.load(directory: directory)
            mllama.crossAttentionMasking = crossAttentionMasking == .meta ? .meta : .huggingface
            let tokenizer = try loadTokenizer(path: try tokenizerPath(in: directory),
                                              extraSpecialTokens: ["<|image|>": mllamaConfig.imageTokenIndex])
            var stop = Set(generation?.eosTokenIds ?? mllamaConfig.textConfig.llama.eosTokenIds ?? [])
            let pad = generation?.padTokenId ?? 0
            let text = mllamaConfig.textConfig.llama
            // The embedding table has 8 rows beyond the text vocabulary (the image token among them).
            let vocabulary = text.vocabSize + MllamaTokenEmbedding.extraRowCount
            let processorURL = directory.appendingPathComponent(MllamaImageProcessorConfig.fileName)
            try requireFile(processorURL.path)
            let processorConfig = try MllamaImageProcessorConfig.load(from: processorURL)
            let processor = try MllamaProcessor(imageProcessor: MllamaImageProcessor(config: processorConfig), tokenizer: tokenizer)
            if chat, let eot = tokenizer.specialTokenID("<|eot_id|>") { stop.insert(eot) }
            let ids = try mllamaPromptIds(prompt, imageCount: images.count, chat: chat, processor: processor)
            if images.isEmpty {
                try checkPrompt(ids, vocabulary: vocabulary, maximumLength: text.maxPositionEmbeddings)
                stream(mllama, prompt: ids, tokenizer: tokenizer, stop: stop, pad: pad, options: options,
                       maximumLength: text.maxPositionEmbeddings)
                return
            }
            let batch = try processor.process(tokenIDs: [ids], images: [try images.map { try loadImageFile($0) }])
            guard let imageBatch = batch.images, let crossMask = batch.crossAttentionMask else {
                throw CommandFailure("the processor produced no image inputs")
            }
            try checkPrompt(batch.tokenIDs[0], vocabulary: vocabulary, maximumLength: text.maxPositionEmbeddings)
            // A preprocessor_config.json that does not match the model (tile size, tile count) is
            // an error naming it, not a crash in the image encoder.
            _ = try MllamaImageInputs(
                pixelValues: imageBatch.pixelValues, aspectRatioIds: imageBatch.aspectRatioIDs,
                aspectRatioMask: imageBatch.aspectRatioMask, crossAttentionMask: crossMask,
                inputIds: Tensor(indices: batch.tokenIDs[0], shape: [1, batch.tokenIDs[0].count]),
                vision: mllamaConfig.visionConfig, source: "\(processorURL.path) with \(model)/config.json")
            let decoder = mllama.conditioned(pixelValues: imageBatch.pixelValues, aspectRatioIds: imageBatch.aspectRatioIDs,
                                             aspectRatioMask: imageBatch.aspectRatioMask, crossAttentionMask: crossMask)
            stream(decoder, prompt: batch.tokenIDs[0], tokenizer: tokenizer, stop: stop, pad: pad, options: options,
                   maximumLength: text.maxPositionEmbeddings)
        case .llava(let llavaConfig):
            let llava = try LlavaForConditionalGeneration.load(directory: directory)
            let tokenizer = try loadTokenizer(path: try tokenizerPath(in: directory),
                                              extraSpecialTokens: ["<image>": llavaConfig.imageTokenIndex])
            var stop = Set(generation?.eosTokenIds ?? llavaConfig.textConfig.eosTokenIds ?? [])
            let pad = generation?.padTokenId ?? 0
            let text = llavaConfig.textConfig
            let processor = try llavaProcessor(directory: directory, config: llavaConfig, tokenizer: tokenizer)
            let loaded = try images.map { try loadImageFile($0) }
            let batch = try chat
                ? llavaChatBatch(prompt, images: loaded, tokenizerPath: tokenizerPath(in: directory), config: llavaConfig, processor: processor)
                : processor.process(prompts: [llavaMarkedPrompt(prompt, imageCount: images.count)], images: [loaded])
            if chat, let eot = tokenizer.specialTokenID("<|eot_id|>") { stop.insert(eot) }
            let (ids, pixels) = (batch.tokenIDs[0], batch.pixelValues)
            try checkPrompt(ids, vocabulary: text.vocabSize, maximumLength: text.maxPositionEmbeddings)
            guard let pixels else {
                stream(llava, prompt: ids, tokenizer: tokenizer, stop: stop, pad: pad, options: options, maximumLength: text.maxPositionEmbeddings)
                return
            }
            try checkLlavaImages(pixels, inputIds: batch.inputIDs, model: llava,
                                 source: "\(directory.appendingPathComponent(CLIPImageProcessorConfig.fileName).path) with \(model)/config.json")
            stream(llava.conditioned(pixelValues: pixels), prompt: ids, tokenizer: tokenizer, stop: stop, pad: pad, options: options,
                   maximumLength: text.maxPositionEmbeddings)
        case .tokenStream(let streamConfig):
            let streamModel = try TokenStreamModel.load(directory: directory)
            let tokenizer = try loadTokenizer(path: try tokenizerPath(in: directory),
                                              extraSpecialTokens: ["<|image|>": streamConfig.imageTokenIndex])
            var stop = Set(generation?.eosTokenIds ?? streamConfig.textConfig.eosTokenIds ?? [])
            if chat, let eot = tokenizer.specialTokenID("<|eot_id|>") { stop.insert(eot) }
            let pad = generation?.padTokenId ?? 0
            let text = streamConfig.textConfig
            let processor = try tokenStreamProcessor(directory: directory, config: streamConfig, tokenizer: tokenizer)
            let (ids, batch) = try tokenStreamPrompt(prompt, images: images, chat: chat, processor: processor, config: streamConfig)
            try checkPrompt(ids, vocabulary: text.vocabSize, maximumLength: text.maxPositionEmbeddings, imageTokenID: streamConfig.imageTokenIndex)
            guard let batch else {
                stream(streamModel, prompt: ids, tokenizer: tokenizer, stop: stop, pad: pad, options: options, maximumLength: text.maxPositionEmbeddings)
                return
            }
            let decoder = streamModel.conditioned(pixelValues: batch.pixelValues, aspectRatioIds: batch.aspectRatioIDs,
                                            aspectRatioMask: batch.aspectRatioMask)
            stream(decoder, prompt: ids, tokenizer: tokenizer, stop: stop, pad: pad, options: options, maximumLength: text.maxPositionEmbeddings)
        }
    }

    /// Token ids of a text model's prompt: the chat format, or the text with the special tokens
    /// the tokenizer files add (as transformers' `tokenizer(prompt)`).
    private func promptIds(_ prompt: String, tokenizer: Tokenizer, stop: inout Set<Int>) throws -> [Int] {
        guard chat else { return tokenizer.encode(prompt, addingSpecialTokens: true) }
        if let eot = tokenizer.specialTokenID("<|eot_id|>") { stop.insert(eot) }
        return try chatPromptIds(prompt, imageCount: 0, tokenizer: tokenizer)
    }

    /// The prompt: `--prompt`, or standard input for `-`.
    private func promptText() throws -> String {
        guard prompt == "-" else { return prompt }
        let data = try readInput("-")
        guard let text = String(data: data, encoding: .utf8) else { throw CommandFailure("standard input: the prompt is not UTF-8") }
        return text
    }

    /// Refuses a prompt the model cannot take: ids past its embedding table (a tokenizer that does
    /// not belong to the model) or more tokens than its maximum length. `imageTokenID`, when given,
    /// is allowed beyond the vocabulary (a token-stream model's `<|image|>`, never embedded).
    private func checkPrompt(_ ids: [Int], vocabulary: Int, maximumLength: Int, imageTokenID: Int? = nil) throws {
        if let bad = ids.first(where: { ($0 < 0 || $0 >= vocabulary) && $0 != imageTokenID }) {
            throw CommandFailure("the tokenizer gives token id \(bad), outside the model's vocabulary of \(vocabulary): "
                                 + "the tokenizer (\(tokenizer ?? "found in --model")) does not belong to \(model)")
        }
        guard ids.count < maximumLength else {
            throw CommandFailure("the prompt is \(ids.count) tokens; \(model) handles at most \(maximumLength) "
                                 + "(max_position_embeddings), leaving no room to generate")
        }
    }

    /// Generates and prints complete characters as they arrive, then a summary on standard error.
    /// Generation stops at `--max-tokens` or when the sequence reaches the model's maximum length.
    private func stream(_ decoder: some IncrementalDecoder, prompt ids: [Int], tokenizer: Tokenizer, stop: Set<Int>,
                        pad: Int, options: SamplingOptions, maximumLength: Int) {
        let budget = min(maxTokens, maximumLength - ids.count)
        let start = Date()
        let produced = streamGeneration(decoder, prompt: ids, tokenizer: tokenizer, stop: stop, pad: pad, options: options,
                                        maxNewTokens: budget) { writeText(Data($0)) }
        writeText(Data([0x0A]))
        let limit = budget < maxTokens ? ", stopped at the model's maximum length of \(maximumLength) tokens" : ""
        let seconds = String(format: "%.2f", Date().timeIntervalSince(start))
        FileHandle.standardError.write(Data("[\(ids.count) prompt tokens, \(produced.count) new tokens, \(seconds) s\(limit)]\n".utf8))
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

/// Generates from `prompt` and hands `write` the text as it arrives, in runs of whole UTF-8
/// characters; everything written, joined, is exactly the UTF-8 of decoding the new tokens at once.
/// - Returns: the new tokens (stop tokens excluded).
func streamGeneration(_ decoder: some IncrementalDecoder, prompt: [Int], tokenizer: Tokenizer, stop: Set<Int>, pad: Int,
                      options: SamplingOptions, maxNewTokens: Int, write: @escaping ([UInt8]) -> Void) -> [Int] {
    var produced: [Int] = []
    var text = StreamingDecoder(tokenizer: tokenizer)
    _ = generate(with: decoder, prompts: [prompt], maxNewTokens: maxNewTokens, sampling: options, stopTokens: stop,
                 padToken: pad) { step in
        guard let token = step[0], !stop.contains(token) else { return true }
        produced.append(token)
        let bytes = text.append(token)
        if !bytes.isEmpty { write(bytes) }
        return true
    }
    let rest = text.finish()
    if !rest.isEmpty { write(rest) }
    return produced
}
