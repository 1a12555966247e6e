import Checkpoint
import Layers
import TensorCore

// The controlled comparison model: LLaVA's fusion on Llama 3.2 Vision's parts. Mllama's tiled
// image encoder (the cross-attention model's, same configuration and initialisation) feeds a LLaVA
// projector (one linear layer, or linear → GELU → linear) whose outputs replace the embeddings of
// the image tokens in the frozen Llama's input — one text position per image feature, as LLaVA
// does — instead of being read by cross-attention layers. Only the fusion differs.
//
// Shapes: B batch, T text tokens, N images per row, X tiles per image, L tokens per tile,
// P = X·L image tokens per image, I real images in the batch, F encoder output width, D text width.

/// LLaVA-style token-stream fusion with Mllama's image encoder and a Llama text model
/// (`model_type: vlmkit_token_stream`).
///
/// Every `<|image|>` of the input stands for one image and must already be expanded to
/// ``imageTokensPerImage`` consecutive `<|image|>` tokens (``expandImageTokens(_:imageTokenID:count:)``);
/// the images are Mllama's `[B, N, X, C, H, W]` tiles.
///
/// ```swift
/// let model = try TokenStreamModel.load(directory: url)
/// let logits = model.logits(ModelInputs(inputIDs: ids, pixelValues: tiles, aspectRatioIDs: ratios))   // (B, T, V)
/// ```
public final class TokenStreamModel: Module {
    override public class var checkpointKeys: [String: String] {
        ["visionModel": "vision_model", "projector": "multi_modal_projector", "languageModel": "language_model"]
    }

    public let config: TokenStreamConfig
    /// `vision_model.*`: Mllama's encoder.
    public let visionModel: MllamaVisionModel
    /// `multi_modal_projector.linear_1` (and `linear_2`).
    public let projector: LlavaMultiModalProjector
    /// `language_model.*`: the Llama text model itself.
    public let languageModel: LlamaForCausalLM

    /// A model with weights from `factory` (random, or placeholders to load into).
    public convenience init(config: TokenStreamConfig, factory: ParameterFactory) {
        let vision = MllamaVisionModel(config: config.visionConfig, factory: factory)
        let projector = Self.makeProjector(config: config, factory: factory)
        self.init(config: config, visionModel: vision, projector: projector,
                  languageModel: LlamaForCausalLM(config: config.textConfig, factory: factory))
    }

    /// A model from its parts (a fresh encoder and projector on a loaded text model).
    public init(config: TokenStreamConfig, visionModel: MllamaVisionModel, projector: LlavaMultiModalProjector,
                languageModel: LlamaForCausalLM) {
        self.config = config
        self.visionModel = visionModel
        self.projector = projector
        self.languageModel = languageModel
        super.init()
    }

    /// The projector `config` names, from the encoder's output width to the text width.
    public static func makeProjector(config: TokenStreamConfig, factory: ParameterFactory) -> LlavaMultiModalProjector {
        LlavaMultiModalProjector(inFeatures: config.visionConfig.visionOutputDim, outFeatures: config.textConfig.hiddenSize,
                                 activation: .gelu, twoLayers: config.projectorType == .mlp2xGELU, bias: true, factory: factory)
    }

    /// Text positions each image takes (``TokenStreamConfig/imageTokensPerImage``).
    public var imageTokensPerImage: Int { config.imageTokensPerImage }

    /// The projected features `[I, P, D]` of the real images (aspect-ratio id ≠ 0), row by row,
    /// for `[B, N, X, C, H, W]` tiles.
    public func imageFeatures(pixelValues: Tensor, aspectRatioIds: Tensor, aspectRatioMask: Tensor?) -> Tensor {
        let encoded = visionModel(pixelValues: pixelValues, aspectRatioIds: aspectRatioIds,
                                  aspectRatioMask: aspectRatioMask)                          // (B, N, X, L, F)
        let slots = encoded.shape[0] * encoded.shape[1], p = imageTokensPerImage, f = encoded.shape[4]
        let flat = encoded.reshaped([slots, p * f])                                          // (B·N, P·F)
        let ids = aspectRatioIds.integers()
        let real = (0..<slots).filter { ids[$0] != 0 }
        let selected = real.count == slots ? flat
            : embedding(Tensor(indices: real, shape: [real.count]), table: flat)             // (I, P·F)
        return projector(selected.reshaped([real.count, p, f]))                              // (I, P, D)
    }

    /// The final-normed hidden states `[B, T, D]`.
    /// - Parameters:
    ///   - inputIds: `[B, T]`, each image as ``imageTokensPerImage`` `<|image|>` tokens.
    ///   - attentionMask: `[B, cached + T]`, 1 for real tokens; all ones when `nil`.
    ///   - pixelValues: `[B, N, X, C, H, W]`; `nil` for text only (or decoding after the prompt).
    ///   - aspectRatioIds: `[B, N]`, required with `pixelValues`; 0 marks a padding image.
    public func hiddenStates(inputIds: Tensor, attentionMask: Tensor? = nil, pixelValues: Tensor? = nil,
                             aspectRatioIds: Tensor? = nil, aspectRatioMask: Tensor? = nil, cache: KVCache? = nil) -> Tensor {
        ensure(inputIds.rank == 2, "input_ids must be [B, T], got \(inputIds.shape)")
        let imageID = config.imageTokenIndex
        // `<|image|>` has no row in the text model's table; its positions are overwritten below.
        let ids = inputIds.integers()
        let textIDs = ids.contains(imageID) ? Tensor(indices: ids.map { $0 == imageID ? 0 : $0 }, shape: inputIds.shape) : inputIds
        var embeddings = languageModel.model.tokenEmbedding(textIDs)                        // (B, T, D)
        if let pixelValues {
            ensure(aspectRatioIds != nil, "aspect_ratio_ids must be given with pixel_values")
            let features = imageFeatures(pixelValues: pixelValues, aspectRatioIds: aspectRatioIds!,
                                         aspectRatioMask: aspectRatioMask)                   // (I, P, D)
            embeddings = spliceImageFeatures(features, into: embeddings, inputIds: inputIds, imageTokenID: imageID)
        } else {
            ensure(cache != nil && cache!.length > 0 || !ids.contains(imageID),
                   "input_ids hold <|image|> tokens but no pixel_values were given")
        }
        let (positions, mask) = LlamaForCausalLM.positionsAndMask(
            batch: inputIds.shape[0], newTokens: inputIds.shape[1], attentionMask: attentionMask, cachedLength: cache?.length ?? 0)
        return languageModel.model(embeddings: embeddings, positions: positions, mask: mask, cache: cache)
    }

    /// A cache for `batch` rows of up to `capacity` positions (the text model's).
    public func makeCache(batch: Int, capacity: Int) -> KVCache { languageModel.makeCache(batch: batch, capacity: capacity) }
}

/// Token ids with every `imageTokenID` repeated `count` times: one `<|image|>` per image, as the
/// processor writes it, becomes the positions the token-stream model splices the image into.
public func expandImageTokens(_ ids: [Int], imageTokenID: Int, count: Int) -> [Int] {
    ids.flatMap { $0 == imageTokenID ? Array(repeating: $0, count: count) : [$0] }
}

// MARK: - Training

/// Groups of parameters the token-stream model trains, selected by name.
public enum TokenStreamParameterGroup: String, CaseIterable, Sendable {
    /// The image encoder (`vision_model.**`), as the cross-attention model's `visionModel`.
    case visionModel
    /// The LLaVA projector (`multi_modal_projector.**`).
    case projector
    /// The Llama text model (`language_model.**`); frozen in the comparison.
    case textModel
}

extension TokenStreamModel: TrainableLanguageModel {
    public func hiddenStates(_ inputs: ModelInputs) -> Tensor {
        // The cross-attention mask a batch may carry is the cross-attention model's; unused here.
        ensure(inputs.imageRowGroups == 1, "the token-stream model encodes every row's images (imageRowGroups must be 1)")
        return hiddenStates(inputIds: inputs.inputIDs, attentionMask: inputs.attentionMask, pixelValues: inputs.pixelValues,
                     aspectRatioIds: inputs.aspectRatioIDs, aspectRatioMask: inputs.aspectRatioMask)
    }

    public func logits(hiddenStates: Tensor) -> Tensor { languageModel.logits(hiddenStates: hiddenStates) }

    public var parameterGroupNames: [String] { TokenStreamParameterGroup.allCases.map(\.rawValue) }

    public func parameterPatterns(forGroup name: String) -> [String]? {
        switch TokenStreamParameterGroup(rawValue: name) {
        case .visionModel: ["vision_model.**"]
        case .projector: ["multi_modal_projector.**"]
        case .textModel: ["language_model.**"]
        case nil: nil
        }
    }

    public func setActivationCheckpointing(_ enabled: Bool) {
        languageModel.setActivationCheckpointing(enabled)
        visionModel.transformer.activationCheckpointing = enabled
        visionModel.globalTransformer.activationCheckpointing = enabled
    }
}

// MARK: - Generation

extension TokenStreamModel: IncrementalDecoder {
    /// Text-only decoding.
    public func decode(_ ids: Tensor, attentionMask: Tensor, cache: KVCache) -> Tensor {
        let hidden = hiddenStates(inputIds: ids, attentionMask: attentionMask, cache: cache)   // (B, T, D)
        return languageModel.logits(hiddenStates: hidden.slice(axis: 1, (hidden.shape[1] - 1)..<hidden.shape[1]))
    }

    /// A decoder for ``generate(with:prompts:maxNewTokens:sampling:stopTokens:padToken:onStep:)`` that
    /// splices these images into the prompts (whose `<|image|>` tokens are expanded) at the prompt
    /// step; later steps read the KV cache.
    public func conditioned(pixelValues: Tensor, aspectRatioIds: Tensor, aspectRatioMask: Tensor? = nil) -> TokenStreamImageDecoder {
        TokenStreamImageDecoder(model: self, pixelValues: pixelValues, aspectRatioIds: aspectRatioIds, aspectRatioMask: aspectRatioMask)
    }
}

/// The token-stream model with a fixed set of images, for ``generate(with:prompts:maxNewTokens:sampling:stopTokens:padToken:onStep:)``.
public final class TokenStreamImageDecoder: IncrementalDecoder {
    public let model: TokenStreamModel
    public let pixelValues: Tensor
    public let aspectRatioIds: Tensor
    public let aspectRatioMask: Tensor?

    init(model: TokenStreamModel, pixelValues: Tensor, aspectRatioIds: Tensor, aspectRatioMask: Tensor?) {
        self.model = model
        self.pixelValues = pixelValues
        self.aspectRatioIds = aspectRatioIds
        self.aspectRatioMask = aspectRatioMask
    }

    public func makeCache(batch: Int, capacity: Int) -> KVCache { model.makeCache(batch: batch, capacity: capacity) }

    public func decode(_ ids: Tensor, attentionMask: Tensor, cache: KVCache) -> Tensor {
        let isPrompt = cache.length == 0
        let hidden = model.hiddenStates(inputIds: ids, attentionMask: attentionMask, pixelValues: isPrompt ? pixelValues : nil,
                                        aspectRatioIds: aspectRatioIds, aspectRatioMask: aspectRatioMask, cache: cache)  // (B, T, D)
        return model.languageModel.logits(hiddenStates: hidden.slice(axis: 1, (hidden.shape[1] - 1)..<hidden.shape[1]))
    }
}
