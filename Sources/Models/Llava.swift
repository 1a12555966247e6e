import Checkpoint
import Layers
import TensorCore

// LLaVA (`LlavaForConditionalGeneration`): a CLIP vision tower whose hidden states at
// `vision_feature_layer` (one layer, or several concatenated on the feature axis) — without the
// class token under `vision_feature_select_strategy: default` — go through a projector into the
// text width and replace the embeddings of the `<image>` tokens, which the processor has expanded
// to one token per image feature; the Llama text model then reads the mixed sequence.
//
// Shapes: B batch, T text tokens, I images in the batch, C channels, H×W pixels, L CLIP tokens
// per image, P image tokens per image (L or L − 1), E CLIP width, D text width, V vocabulary.

/// The multi-modal projector (`multi_modal_projector.*`): `linear_2(act(linear_1(x)))`, or
/// LLaVA-1's single `linear_1(x)`.
public final class LlavaMultiModalProjector: Module {
    override public class var checkpointKeys: [String: String] { ["linear1": "linear_1", "linear2": "linear_2"] }

    let linear1: Linear
    let activation: Activation
    /// `nil` for the single-linear projector.
    let linear2: Linear?

    /// A projector from `inFeatures` image features to the text width `outFeatures` (usable with
    /// any image encoder, not only CLIP): two layers with `activation` between, or one.
    public init(inFeatures: Int, outFeatures: Int, activation: Activation, twoLayers: Bool, bias: Bool, factory: ParameterFactory) {
        linear1 = Linear(inFeatures: inFeatures, outFeatures: outFeatures, bias: bias, factory: factory)
        self.activation = activation
        linear2 = twoLayers ? Linear(inFeatures: outFeatures, outFeatures: outFeatures, bias: bias, factory: factory) : nil
        super.init()
    }

    /// A projector from given layers.
    init(linear1: Linear, activation: Activation, linear2: Linear?) {
        self.linear1 = linear1
        self.activation = activation
        self.linear2 = linear2
        super.init()
    }

    /// `[…, E·layers] → […, D]`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard let linear2 else { return linear1(x) }
        return linear2(activation(linear1(x)))
    }
}

/// LLaVA: CLIP vision tower, projector, and the Llama text model (`LlamaForCausalLM`, itself).
///
/// ```swift
/// let model = try LlavaForConditionalGeneration.load(directory: url)
/// let logits = model(inputIds: ids, attentionMask: mask, pixelValues: pixels)   // [B, T, V]
/// ```
public final class LlavaForConditionalGeneration: Module {
    override public class var checkpointKeys: [String: String] {
        ["visionTower": "vision_tower", "projector": "multi_modal_projector", "languageModel": "language_model"]
    }

    public let config: LlavaConfig
    /// `vision_tower.vision_model.*`.
    public let visionTower: CLIPTower
    public let projector: LlavaMultiModalProjector
    public let languageModel: LlamaForCausalLM

    /// A model with weights from `factory` (random, or placeholders to load into).
    /// - Precondition: the activations are ones ``Activation`` implements (``load(directory:)`` checks first).
    public init(config: LlavaConfig, factory: ParameterFactory) {
        guard let activation = Activation(named: config.projectorHiddenAct) else {
            fatalError("projector_hidden_act '\(config.projectorHiddenAct)' is not implemented (\(Activation.implementedNames))")
        }
        self.config = config
        visionTower = CLIPTower(config: config.visionConfig, factory: factory)
        projector = LlavaMultiModalProjector(
            inFeatures: config.visionConfig.hiddenSize * config.visionFeatureLayers.count, outFeatures: config.textConfig.hiddenSize,
            activation: activation, twoLayers: config.projectorType != "linear", bias: config.multimodalProjectorBias, factory: factory)
        languageModel = LlamaForCausalLM(config: config.textConfig, factory: factory)
        super.init()
    }

    /// Image tokens per image: CLIP's tokens, less the class token under the `default` strategy.
    public var imageTokensPerImage: Int {
        visionTower.visionModel.tokensPerImage - (config.visionFeatureSelectStrategy == "default" ? 1 : 0)
    }

    /// The projected features of each image, `[I, P, D]`, for pixels `[I, C, H, W]`.
    public func imageFeatures(pixelValues: Tensor) -> Tensor {
        var states = visionTower.visionModel.hiddenStates(pixelValues, at: config.visionFeatureLayers)   // (I, L, E) each
        if config.visionFeatureSelectStrategy == "default" {
            states = states.map { $0.slice(axis: 1, 1..<$0.shape[1]) }                                  // (I, L − 1, E)
        }
        let selected = states.count == 1 ? states[0] : Tensor.concatenate(states, axis: 2)             // (I, P, E·layers)
        return projector(selected)                                                                       // (I, P, D)
    }

    /// Logits `[B, T, V]` for token ids with the images' features at their `<image>` tokens.
    /// - Parameters:
    ///   - inputIds: `[B, T]`; each image appears as ``imageTokensPerImage`` `image_token_index` tokens.
    ///   - attentionMask: `[B, cached + T]`, 1 for real tokens (left or right padding); all ones when `nil`.
    ///   - pixelValues: `[I, C, H, W]`, every image of the batch in the order its tokens appear
    ///     (row by row); `nil` for text only.
    ///   - cache: extended in place (incremental decoding).
    public func callAsFunction(inputIds: Tensor, attentionMask: Tensor? = nil, pixelValues: Tensor? = nil,
                               cache: KVCache? = nil) -> Tensor {
        languageModel.logits(hiddenStates: hiddenStates(inputIds: inputIds, attentionMask: attentionMask,
                                                        pixelValues: pixelValues, cache: cache))
    }

    /// The final-normed hidden states `[B, T, D]` (same arguments as the call).
    public func hiddenStates(inputIds: Tensor, attentionMask: Tensor? = nil, pixelValues: Tensor? = nil,
                             cache: KVCache? = nil) -> Tensor {
        ensure(inputIds.rank == 2, "input_ids must be [B, T], got \(inputIds.shape)")
        var embeddings = languageModel.model.tokenEmbedding(inputIds)                   // (B, T, D)
        if let pixelValues {
            embeddings = spliceImageFeatures(imageFeatures(pixelValues: pixelValues), into: embeddings,
                                             inputIds: inputIds, imageTokenID: config.imageTokenIndex)
        }
        let (positions, mask) = LlamaForCausalLM.positionsAndMask(
            batch: inputIds.shape[0], newTokens: inputIds.shape[1], attentionMask: attentionMask, cachedLength: cache?.length ?? 0)
        return languageModel.model(embeddings: embeddings, positions: positions, mask: mask, cache: cache)
    }

    /// A cache for `batch` rows of up to `capacity` positions (the text model's).
    public func makeCache(batch: Int, capacity: Int) -> KVCache { languageModel.makeCache(batch: batch, capacity: capacity) }
}

/// The vision tower's wrapper level (`vision_tower.vision_model.*`: transformers' `CLIPVisionModel`
/// holds the transformer as `vision_model`).
public final class CLIPTower: Module {
    override public class var checkpointKeys: [String: String] { ["visionModel": "vision_model"] }

    public let visionModel: CLIPVisionModel

    init(config: CLIPVisionConfig, factory: ParameterFactory) {
        visionModel = CLIPVisionModel(config: config, factory: factory)
        super.init()
    }
}

/// Text embeddings `[B, T, D]` with the rows at `imageTokenID` replaced, in reading order (row by
/// row, left to right), by the rows of `features` `[I, P, D]` taken in order — transformers'
/// `masked_scatter`. Other rows are unchanged; gradients flow to both inputs.
///
/// - Precondition: the ids hold exactly I·P image tokens.
public func spliceImageFeatures(_ features: Tensor, into embeddings: Tensor, inputIds: Tensor, imageTokenID: Int) -> Tensor {
    let (b, t, d) = (embeddings.shape[0], embeddings.shape[1], embeddings.shape[2])
    ensure(features.rank == 3 && features.shape[2] == d, "image features must be [I, P, \(d)], got \(features.shape)")
    let ids = inputIds.integers()
    let featureRows = features.shape[0] * features.shape[1]
    var source = [Int](repeating: 0, count: b * t)   // 0: keep the text row; k: feature row k − 1
    var next = 0
    for (index, id) in ids.enumerated() where id == imageTokenID {
        next += 1
        if next <= featureRows { source[index] = next }
    }
    ensure(next == featureRows, "image features and image tokens do not match: \(next) <image> tokens in input_ids, "
           + "\(features.shape[0]) images × \(features.shape[1]) features = \(featureRows)")
    let isImage = Tensor(indices: source.map { $0 > 0 ? 1 : 0 }, shape: [b, t, 1])
    // One zero row in front of the features, so that text positions gather zeros.
    let table = Tensor.concatenate([Tensor(zeros: [1, d], dtype: features.dtype),
                                    features.reshaped([featureRows, d])], axis: 0)   // (1 + I·P, D)
    let scattered = embedding(Tensor(indices: source, shape: [b, t]), table: table)  // (B, T, D)
    let text = embeddings.dtype == features.dtype ? embeddings : embeddings.converted(to: features.dtype)
    return text.maskedFill(isImage, with: 0) + scattered
}
