import Checkpoint
import Foundation
import Models
import Processing
import TensorCore
import Tokenization

/// The processor of a token-stream model folder (`model_type: vlmkit_token_stream`): its Mllama
/// `preprocessor_config.json` and tokenizer with `<|image|>` at the config's id.
/// - Throws: ``CommandFailure`` naming `preprocessor_config.json` when its tiles are not the
///   encoder's (tile size, tile count): the image-token count per image depends on them.
func tokenStreamProcessor(directory: URL, config: TokenStreamConfig, tokenizer: Tokenizer) throws -> MllamaProcessor {
    let url = directory.appendingPathComponent(MllamaImageProcessorConfig.fileName)
    try requireFile(url.path)
    let images: MllamaImageProcessor
    do { images = try MllamaImageProcessor(config: try MllamaImageProcessorConfig.load(from: url)) } catch let error as ProcessingError {
        throw CommandFailure("\(url.path): \(error.message)")
    }
    let vision = config.visionConfig
    guard images.tileSize == vision.imageSize, images.config.maxImageTiles == vision.maxNumTiles else {
        throw CommandFailure("\(url.path): tiles of \(images.tileSize) pixels, at most \(images.config.maxImageTiles) per image, "
                             + "but the image encoder takes \(vision.imageSize)-pixel tiles, \(vision.maxNumTiles) per image "
                             + "(config.json vision_config image_size, max_num_tiles)")
    }
    return try MllamaProcessor(imageProcessor: images, tokenizer: tokenizer)
}

/// The image tensors of a token-stream forward pass, checked against the model: Mllama's tile
/// tensors (shapes, dtypes and ids as ``MllamaImageInputs`` checks them), and in each row of
/// `input_ids` exactly ``TokenStreamModel/imageTokensPerImage`` `<|image|>` tokens per real image
/// (aspect-ratio id ≠ 0) — a wrong count would splice one row's image into another's text.
/// - Throws: ``CommandFailure`` naming `source`.
func checkTokenStreamImages(_ images: MllamaImageInputs, inputIds: Tensor, config: TokenStreamConfig, source: String) throws {
    let (b, t) = (inputIds.shape[0], inputIds.shape[1])
    let ids = inputIds.integers(), imageID = config.imageTokenIndex, perImage = config.imageTokensPerImage
    let ratios = images.aspectRatioIds?.integers() ?? []
    let slots = images.pixelValues?.shape[1] ?? 0
    for row in 0..<b {
        let tokens = ids[row * t ..< (row + 1) * t].count(where: { $0 == imageID })
        let real = (0..<slots).count(where: { ratios[row * slots + $0] != 0 })
        guard tokens != real * perImage else { continue }
        let hint = tokens == real && real > 0
            ? " (one <|image|> per image, as the processor writes them: expand each to \(perImage), as `vlm preprocess --prompt` does)" : ""
        throw CommandFailure("\(source): row \(row) of input_ids holds \(tokens) <|image|> tokens (id \(imageID)), but "
                             + "\(real) image\(real == 1 ? "" : "s") (aspect_ratio_ids ≠ 0) need \(perImage) each = \(real * perImage)\(hint)")
    }
}

/// Token ids a token-stream model reads: text ids below the text vocabulary, and `<|image|>`.
/// - Throws: ``CommandFailure`` naming `source` and the first id outside them.
func checkTokenStreamIds(_ ids: [Int], config: TokenStreamConfig, source: String) throws {
    let vocabulary = config.textConfig.vocabSize
    if let bad = ids.first(where: { ($0 < 0 || $0 >= vocabulary) && $0 != config.imageTokenIndex }) {
        throw CommandFailure("\(source): token id \(bad) is outside the text vocabulary of \(vocabulary) "
                             + "and is not <|image|> (\(config.imageTokenIndex))")
    }
}

/// The prompt ids and processed images `vlm generate` and `vlm preprocess` give a token-stream
/// model: the prompt as for mllama (the chat format, or the processor's tokenization, `<|image|>`
/// marking each image, all first by default), each `<|image|>` expanded to the model's image tokens.
/// - Throws: ``CommandFailure`` when the number of `<|image|>` markers is not the number of images.
func tokenStreamPrompt(_ prompt: String, images: [String], chat: Bool, processor: MllamaProcessor,
                       config: TokenStreamConfig) throws -> (ids: [Int], images: MllamaImageBatch?) {
    let ids = try mllamaPromptIds(prompt, imageCount: images.count, chat: chat, processor: processor)
    let markers = ids.count(where: { $0 == config.imageTokenIndex })
    guard markers == images.count else {
        throw CommandFailure("the prompt holds \(markers) <|image|> marker\(markers == 1 ? "" : "s") but \(images.count) "
                             + "image\(images.count == 1 ? " was" : "s were") given (--image): one marker per image, or none to put every image first")
    }
    guard !images.isEmpty else { return (ids, nil) }
    let batch = try processor.imageProcessor.preprocess([try images.map { try loadImageFile($0) }])
    return (expandImageTokens(ids, imageTokenID: config.imageTokenIndex, count: config.imageTokensPerImage), batch)
}
