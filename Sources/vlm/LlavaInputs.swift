import Checkpoint
import Foundation
import Media
import Models
import Processing
import TensorCore
import Tokenization

/// The LLaVA processor of a checkpoint folder: its `preprocessor_config.json` (CLIP's, `do_pad` for
/// LLaVA-1.5's pad-to-square) and tokenizer, with the image-token count the model's vision tower
/// gives (`vision_feature_select_strategy`, CLIP's class token).
/// - Throws: ``CommandFailure`` naming `preprocessor_config.json` when its images do not come out
///   at the model's `image_size`.
func llavaProcessor(directory: URL, config: LlavaConfig, tokenizer: Tokenizer) throws -> LlavaProcessor {
    let url = directory.appendingPathComponent(CLIPImageProcessorConfig.fileName)
    try requireFile(url.path)
    let images: CLIPImageProcessor
    do { images = try CLIPImageProcessor(config: try CLIPImageProcessorConfig.load(from: url)) } catch let error as ProcessingError {
        throw CommandFailure("\(url.path): \(error.message)")
    }
    let size = config.visionConfig.imageSize
    if images.config.doCenterCrop, images.config.cropSize.height != size || images.config.cropSize.width != size {
        throw CommandFailure("\(url.path): crop_size \(images.config.cropSize.height ?? 0)x\(images.config.cropSize.width ?? 0) "
                             + "does not match the vision tower's image_size \(size)")
    }
    return try LlavaProcessor(imageProcessor: images, tokenizer: tokenizer, patchSize: config.visionConfig.patchSize,
                              numAdditionalImageTokens: 1, visionFeatureSelectStrategy: config.visionFeatureSelectStrategy)
}

/// `prompt` with its `<image>` markers: as given when it has any, else one `<image>\n` per image
/// first (llava-hf's prompts put the image before the question).
func llavaMarkedPrompt(_ prompt: String, imageCount: Int) -> String {
    prompt.contains("<image>") ? prompt : String(repeating: "<image>\n", count: imageCount) + prompt
}

/// The image tensor of a LLaVA forward pass, checked against the model so that a wrong dtype,
/// shape or image-token count is a message naming the tensor instead of a crash inside the model.
/// - Throws: ``CommandFailure`` naming `source`.
func checkLlavaImages(_ pixelValues: Tensor?, inputIds: Tensor, model: LlavaForConditionalGeneration, source: String) throws {
    let imageTokens = inputIds.integers().count(where: { $0 == model.config.imageTokenIndex })
    guard let pixelValues else {
        guard imageTokens == 0 else {
            throw CommandFailure("\(source): input_ids holds \(imageTokens) image tokens (id \(model.config.imageTokenIndex)) but there is no pixel_values")
        }
        return
    }
    let vision = model.config.visionConfig, size = vision.imageSize
    guard pixelValues.dtype == .float32 else {
        throw CommandFailure("\(source): pixel_values must be float32 (as the image processor writes them), got \(pixelValues.dtype)")
    }
    guard pixelValues.rank == 4, pixelValues.shape[1] == vision.numChannels, pixelValues.shape[2] == size, pixelValues.shape[3] == size else {
        throw CommandFailure("\(source): pixel_values must be [I, C, H, W] = [I, \(vision.numChannels), \(size), \(size)] "
                             + "for this model (image_size \(size)), got \(pixelValues.shape)")
    }
    let expected = pixelValues.shape[0] * model.imageTokensPerImage
    guard imageTokens == expected else {
        throw CommandFailure("\(source): input_ids holds \(imageTokens) image tokens (id \(model.config.imageTokenIndex)); "
                             + "\(pixelValues.shape[0]) images need \(model.imageTokensPerImage) each = \(expected)")
    }
}

/// `prompt` as one user message of the Llama 3 chat format ready for the assistant's reply, with its
/// images, through the processor: for a LLaVA built on a Llama 3 (as `vlm adapters init` builds it
/// and `vlm train` trains it), each `<image>` (none: every image first) an image part expanded to the
/// model's image tokens. llava-hf's own checkpoints each have their own conversation template instead.
/// - Throws: ``CommandFailure`` when the tokenizer lacks the chat format's tokens; the processor's
///   error when the number of `<image>` markers is not the number of images.
func llavaChatBatch(_ prompt: String, images: [Image], tokenizerPath: String, config: LlavaConfig,
                    processor: LlavaProcessor) throws -> LlavaBatch {
    guard processor.tokenizer.specialTokenID("<|start_header_id|>") != nil, processor.tokenizer.specialTokenID("<|eot_id|>") != nil else {
        throw CommandFailure("--chat is not supported for llava checkpoints without the Llama 3 chat format's tokens "
                             + "(llava-hf's use their own conversation templates): write the conversation into --prompt, "
                             + "e.g. \"USER: <image>\\nWhat is this? ASSISTANT:\"")
    }
    // The chat format writes an image part as <|image|>: given <image>'s id.
    let tokenizer = try loadTokenizer(path: tokenizerPath, extraSpecialTokens: ["<|image|>": config.imageTokenIndex])
    let ids = try chatPromptIds(prompt.replacingOccurrences(of: "<image>", with: "<|image|>"), imageCount: images.count, tokenizer: tokenizer)
    do { return try processor.process(tokenIDs: [ids], images: [images]) } catch let error as ProcessingError {
        throw CommandFailure(error.message)
    }
}
