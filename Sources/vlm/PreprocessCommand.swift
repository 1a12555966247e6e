import ArgumentParser
import Checkpoint
import Foundation
import Media
import Processing
import TensorCore

/// `vlm preprocess`: images through a checkpoint's image processor (Mllama's, or CLIP's for LLaVA),
/// into a safetensors file.
struct PreprocessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Turn images into vision inputs: Mllama's (pixel_values, aspect_ratio_ids, aspect_ratio_mask) or LLaVA's (pixel_values).",
        discussion: """
            Reads DIR/preprocessor_config.json and treats the images as one sample, in order. OUT \
            receives pixel_values [1, N, tiles, 3, H, W] (float32), aspect_ratio_ids [1, N] and \
            aspect_ratio_mask [1, N, tiles] (int64), written atomically. With --prompt it also writes \
            the text inputs `vlm generate` gives the model: input_ids and attention_mask [1, T] and, \
            with images, cross_attention_mask [1, T, N, tiles] (int64), tokenized with the \
            checkpoint's tokenizer files as transformers' processor does. Example:
              vlm preprocess --model Llama-3.2-11B-Vision --image cat.png --image dog.jpg --out pixels.safetensors
              vlm preprocess --model DIR --image cat.png --prompt "Describe it." --chat --out inputs.safetensors
            For a llava checkpoint (config.json model_type llava, or a CLIP / LLaVA preprocessor_config.json) \
            OUT receives pixel_values [N, 3, H, W] (float32); with --prompt (each <image> expanded to the \
            model's image tokens; default: one <image> line per image first) also input_ids and \
            attention_mask [1, T], the inputs `vlm forward` reads. For a vlmkit_token_stream checkpoint \
            with --prompt, each <|image|> is expanded to the model's image tokens per image and no \
            cross_attention_mask is written.
            """)

    @Option(help: "A checkpoint directory holding preprocessor_config.json.")
    var model: String

    @Option(help: "A PNG or JPEG image (repeatable; the order is the prompt's <|image|> order).")
    var image: [String] = []

    @Option(help: "Where to write the tensors (safetensors; written atomically, through links; '-' is standard output).")
    var out: String

    @Option(help: "A prompt to tokenize as `vlm generate --prompt` does (<|image|> marks where each image goes; default: all first).")
    var prompt: String?

    @Flag(help: "With --prompt: the prompt as one user message of the chat format, as `vlm generate --chat`.")
    var chat = false

    func validate() throws {
        if image.isEmpty && prompt == nil { throw ValidationError("give at least one --image, or a --prompt") }
        if chat && prompt == nil { throw ValidationError("--chat needs a --prompt") }
    }

    func run() throws {
        if isLlava { return try runLlava() }
        if let prompt, modelType == TokenStreamConfig.modelType { return try writeTokenStreamInputs(prompt: prompt) }
        if let prompt { return try writeTextInputs(prompt: prompt) }
        let configURL = URL(fileURLWithPath: model).appendingPathComponent(MllamaImageProcessorConfig.fileName)
        try requireFile(configURL.path)
        let config = try MllamaImageProcessorConfig.load(from: configURL)
        let processor: MllamaImageProcessor
        do { processor = try MllamaImageProcessor(config: config) } catch let error as ProcessingError {
            throw CommandFailure("\(configURL.path): \(error.message)")
        }
        let images = try image.map { try loadImageFile($0) }
        let batch = try processor.preprocess([images])
        try writeSafetensors(tensors: [("pixel_values", batch.pixelValues), ("aspect_ratio_ids", batch.aspectRatioIDs),
                                       ("aspect_ratio_mask", batch.aspectRatioMask)],
                             metadata: ["num_tiles": batch.numTiles[0].map(String.init).joined(separator: ",")],
                             to: outputURL(out))
        let tiles = zip(image, batch.arrangements[0]).map { "\($0): \($1.rows)x\($1.columns) tiles" }.joined(separator: ", ")
        report("wrote pixel_values \(batch.pixelValues.shape) to \(out) (\(tiles))", dataPath: out)
    }

    /// The model inputs of `prompt` and the images, as `vlm generate` builds them.
    private func writeTextInputs(prompt: String) throws {
        let directory = URL(fileURLWithPath: model)
        let config = try MllamaConfig.load(from: directory.appendingPathComponent(MllamaConfig.fileName))
        let tokenizerFile = ["tokenizer.json", "tokenizer.json.zst"].map { directory.appendingPathComponent($0) }
            .first { FileManager.default.fileExists(atPath: $0.path) }
        guard let tokenizerFile else { throw CommandFailure("\(model): no tokenizer.json or tokenizer.json.zst") }
        let tokenizer = try loadTokenizer(path: tokenizerFile.path, extraSpecialTokens: ["<|image|>": config.imageTokenIndex])
        let imageConfig = try MllamaImageProcessorConfig.load(from: directory.appendingPathComponent(MllamaImageProcessorConfig.fileName))
        let processor = try MllamaProcessor(imageProcessor: MllamaImageProcessor(config: imageConfig), tokenizer: tokenizer)
        let ids = try mllamaPromptIds(prompt, imageCount: image.count, chat: chat, processor: processor)
        let batch = try processor.process(tokenIDs: [ids], images: [try image.map { try loadImage(path: $0) }])
        var tensors: [(String, Tensor)] = [("input_ids", batch.inputIDs), ("attention_mask", batch.attentionMask)]
        if let images = batch.images, let cross = batch.crossAttentionMask {
            tensors += [("pixel_values", images.pixelValues), ("aspect_ratio_ids", images.aspectRatioIDs),
                        ("aspect_ratio_mask", images.aspectRatioMask), ("cross_attention_mask", cross)]
        }
        try writeSafetensors(tensors: tensors, to: URL(fileURLWithPath: out))
        print("wrote input_ids \(batch.inputIDs.shape)\(batch.crossAttentionMask.map { " and cross_attention_mask \($0.shape)" } ?? "") to \(out)")
    }

    /// A string field of a JSON file in the model folder (nil when absent or unreadable).
    private func field(_ file: String, _ key: String) -> String? {
        let url = URL(fileURLWithPath: model).appendingPathComponent(file)
        guard let data = FileManager.default.contents(atPath: url.path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return object[key] as? String
    }

    /// `config.json`'s `model_type`, when there is one.
    private var modelType: String? { field("config.json", "model_type") }

    /// Whether the folder is a LLaVA checkpoint (`config.json`) or holds a CLIP / LLaVA image processor.
    private var isLlava: Bool {
        if let type = modelType { return type == "llava" }
        return ["CLIPImageProcessor", "LlavaImageProcessor"].contains {
            field(CLIPImageProcessorConfig.fileName, "image_processor_type")?.hasPrefix($0) == true
        }
    }

    /// A token-stream model's inputs, as `vlm generate` builds them: each `<|image|>` of the prompt
    /// expanded to the model's image tokens, and Mllama's tile tensors (no cross-attention mask).
    private func writeTokenStreamInputs(prompt: String) throws {
        let directory = URL(fileURLWithPath: model)
        let config = try TokenStreamConfig.load(from: directory.appendingPathComponent(TokenStreamConfig.fileName))
        let tokenizerFile = ["tokenizer.json", "tokenizer.json.zst"].map { directory.appendingPathComponent($0) }
            .first { FileManager.default.fileExists(atPath: $0.path) }
        guard let tokenizerFile else { throw CommandFailure("\(model): no tokenizer.json or tokenizer.json.zst") }
        let tokenizer = try loadTokenizer(path: tokenizerFile.path, extraSpecialTokens: ["<|image|>": config.imageTokenIndex])
        let processor = try tokenStreamProcessor(directory: directory, config: config, tokenizer: tokenizer)
        let (ids, batch) = try tokenStreamPrompt(prompt, images: image, chat: chat, processor: processor, config: config)
        var tensors: [(String, Tensor)] = [("input_ids", Tensor(indices: ids, shape: [1, ids.count])),
                                           ("attention_mask", Tensor(indices: Array(repeating: 1, count: ids.count), shape: [1, ids.count]))]
        if let batch {
            tensors += [("pixel_values", batch.pixelValues), ("aspect_ratio_ids", batch.aspectRatioIDs),
                        ("aspect_ratio_mask", batch.aspectRatioMask)]
        }
        try writeSafetensors(tensors: tensors, to: outputURL(out))
        report("wrote input_ids [1, \(ids.count)] (each <|image|> as \(config.imageTokensPerImage) tokens)"
               + "\(batch.map { " and pixel_values \($0.pixelValues.shape)" } ?? "") to \(out)", dataPath: out)
    }

    /// LLaVA's inputs: the CLIP processor's pixel values and, with a prompt, the expanded ids.
    private func runLlava() throws {
        let directory = URL(fileURLWithPath: model)
        let images = try image.map { try loadImageFile($0) }
        guard let prompt else {
            let configURL = directory.appendingPathComponent(CLIPImageProcessorConfig.fileName)
            try requireFile(configURL.path)
            let pixels: Tensor
            do { pixels = try CLIPImageProcessor(config: try CLIPImageProcessorConfig.load(from: configURL)).preprocess(images) }
            catch let error as ProcessingError { throw CommandFailure("\(configURL.path): \(error.message)") }
            try writeSafetensors(tensors: [("pixel_values", pixels)], to: outputURL(out))
            report("wrote pixel_values \(pixels.shape) to \(out)", dataPath: out)
            return
        }
        let config = try LlavaConfig.load(from: directory.appendingPathComponent(LlavaConfig.fileName))
        let tokenizerFile = ["tokenizer.json", "tokenizer.json.zst"].map { directory.appendingPathComponent($0) }
            .first { FileManager.default.fileExists(atPath: $0.path) }
        guard let tokenizerFile else { throw CommandFailure("\(model): no tokenizer.json or tokenizer.json.zst") }
        let tokenizer = try loadTokenizer(path: tokenizerFile.path, extraSpecialTokens: ["<image>": config.imageTokenIndex])
        let processor = try llavaProcessor(directory: directory, config: config, tokenizer: tokenizer)
        let batch = try chat ? llavaChatBatch(prompt, images: images, tokenizerPath: tokenizerFile.path, config: config, processor: processor)
            : processor.process(prompts: [llavaMarkedPrompt(prompt, imageCount: images.count)], images: [images])
        var tensors: [(String, Tensor)] = [("input_ids", batch.inputIDs), ("attention_mask", batch.attentionMask)]
        if let pixels = batch.pixelValues { tensors.append(("pixel_values", pixels)) }
        try writeSafetensors(tensors: tensors, to: outputURL(out))
        report("wrote input_ids \(batch.inputIDs.shape)\(batch.pixelValues.map { " and pixel_values \($0.shape)" } ?? "") to \(out)", dataPath: out)
    }
}
