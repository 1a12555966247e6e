import Models
import Processing

/// What the data pipeline needs to know of a model: where `<|image|>` is, whether the model reads
/// images at all, and how many text positions an image takes in its token stream.
struct ModelDataLayout: Equatable {
    /// The text vocabulary size (ids below it are text).
    var textVocabulary: Int
    /// The id of `<|image|>` (past the text vocabulary for a text model, which never sees it).
    var imageTokenID: Int
    /// Whether records are encoded with their images (false: the no-vision baseline).
    var readsImages: Bool
    /// Text positions per image: 1 for cross-attention (`<|image|>` only marks the place), the
    /// encoder's tokens per image for the token-stream model.
    var imageTokensPerImage: Int

    init(_ model: any TrainableLanguageModel) throws {
        switch model {
        case let mllama as MllamaForConditionalGeneration:
            self.init(textVocabulary: mllama.config.textConfig.llama.vocabSize, imageTokenID: mllama.config.imageTokenIndex,
                      readsImages: true, imageTokensPerImage: 1)
        case let llava as LlavaForConditionalGeneration:
            self.init(textVocabulary: llava.config.textConfig.vocabSize, imageTokenID: llava.config.imageTokenIndex,
                      readsImages: true, imageTokensPerImage: llava.imageTokensPerImage)
        case let stream as TokenStreamModel:
            self.init(textVocabulary: stream.config.textConfig.vocabSize, imageTokenID: stream.config.imageTokenIndex,
                      readsImages: true, imageTokensPerImage: stream.imageTokensPerImage)
        case let llama as LlamaForCausalLM:
            self.init(textVocabulary: llama.config.vocabSize, imageTokenID: llama.config.vocabSize, readsImages: false,
                      imageTokensPerImage: 1)
        default:
            throw TrainingError("\(type(of: model)) cannot be trained or evaluated by vlm train")
        }
    }

    init(textVocabulary: Int, imageTokenID: Int, readsImages: Bool, imageTokensPerImage: Int) {
        self.textVocabulary = textVocabulary
        self.imageTokenID = imageTokenID
        self.readsImages = readsImages
        self.imageTokensPerImage = imageTokensPerImage
    }

    /// A sample encoder for this model with the processor of its folder (and, for LLaVA, its CLIP
    /// image processor: ``loadCLIPImageProcessor(directory:)``).
    func sampleEncoder(processor: MllamaProcessor, maxLength: Int, maxImages: Int,
                       clipImages: CLIPImageProcessor? = nil) throws -> SampleEncoder {
        var encoder = try SampleEncoder(processor: processor, maxLength: maxLength, maxImages: maxImages, ignoresImages: !readsImages)
        encoder.imageTokensPerImage = imageTokensPerImage
        encoder.clipImageProcessor = clipImages
        return encoder
    }
}
