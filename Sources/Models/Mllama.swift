import Checkpoint
import Layers
import TensorCore

// Llama 3.2 Vision (`MllamaForConditionalGeneration`): the tiled image encoder, a linear projector
// from its output width to the text width, and the language tower whose cross-attention layers
// read the projected image tokens.
//
// Shapes: B batch, T new text tokens, N images per row, X tiles per image, L tokens per tile,
// S = N·X·L image tokens, D text width, V text vocabulary.

/// Llama 3.2 Vision.
///
/// ```swift
/// let model = try MllamaForConditionalGeneration.load(directory: url)
/// let logits = model(inputIds: ids, pixelValues: pixels, aspectRatioIds: ratios,
///                    aspectRatioMask: tiles, crossAttentionMask: crossMask)   // [B, T, V]
/// ```
public final class MllamaForConditionalGeneration: Module {
    override public class var checkpointKeys: [String: String] {
        ["visionModel": "vision_model", "languageModel": "language_model", "projector": "multi_modal_projector"]
    }

    public let config: MllamaConfig
    public let visionModel: MllamaVisionModel
    public let languageModel: MllamaForCausalLM
    /// `vision_output_dim → D`, with bias.
    public let projector: Linear
    /// What a text token that sees no image gets from the cross-attention layers; `.meta` by
    /// default, `.huggingface` for parity with transformers 4.45.2.
    public var crossAttentionMasking: CrossAttentionMasking = .meta

    /// A model with weights from `factory` (random, or placeholders to load into).
    public init(config: MllamaConfig, factory: ParameterFactory) {
        ensure(config.visionConfig.hiddenSize * (1 + config.visionConfig.intermediateLayersIndices.count)
               == config.visionConfig.visionOutputDim,
               "vision_output_dim (\(config.visionConfig.visionOutputDim)) must be hidden_size × (1 + intermediate layers)")
        ensure(config.visionConfig.intermediateLayersIndices.allSatisfy { (0..<config.visionConfig.numHiddenLayers).contains($0) },
               "intermediate_layers_indices \(config.visionConfig.intermediateLayersIndices) must index the \(config.visionConfig.numHiddenLayers) local layers")
        self.config = config
        visionModel = MllamaVisionModel(config: config.visionConfig, factory: factory)
        languageModel = MllamaForCausalLM(config: config.textConfig, factory: factory)
        projector = Linear(inFeatures: config.visionConfig.visionOutputDim, outFeatures: config.textConfig.llama.hiddenSize,
                           bias: true, factory: factory)
        super.init()
    }

    /// Projected image tokens `[B, S, D]` for `[B, N, X, C, H, W]` pixels.
    public func imageStates(pixelValues: Tensor, aspectRatioIds: Tensor, aspectRatioMask: Tensor?) -> Tensor {
        let features = visionModel(pixelValues: pixelValues, aspectRatioIds: aspectRatioIds,
                                   aspectRatioMask: aspectRatioMask)                       // (B, N, X, L, E·(1+I))
        let b = features.shape[0]
        return projector(features).reshaped([b, -1, config.textConfig.llama.hiddenSize])  // (B, S, D)
    }

    /// Logits for a batch of token ids, with or without images.
    ///
    /// - Parameters:
    ///   - inputIds: `[B, T]`; `<|image|>` is `image_token_index` (an extra embedding row).
    ///   - attentionMask: `[B, cached + T]`, 1 for real tokens (left or right padding); all ones when `nil`.
    ///   - pixelValues: `[B, N, X, C, H, W]`; `nil` for text only (then, unless the cache holds an
    ///     image, the cross-attention layers are skipped and the logits are the text model's).
    ///   - aspectRatioIds: `[B, N]`, required with `pixelValues`.
    ///   - aspectRatioMask: `[B, N, X]`, 1 for real tiles.
    ///   - crossAttentionMask: `[B, cached + T, N, X]` as the processor makes it (the rows of the
    ///     new tokens are used), or `[B, T, N, X]`. `nil` with an image: every token sees every
    ///     image token (transformers' behaviour); `nil` while decoding from a cache that holds an
    ///     image: the last row seen is repeated (as transformers' `generate`).
    ///   - cache: extended in place; the image's keys and values are stored in it.
    ///   - imageRowGroups: k > 1 when the rows come in k groups of B / k showing the same images
    ///     and the image tensors hold the first group's only (``ModelInputs/imageRowGroups``).
    /// - Returns: `[B, T, V]` logits over the text vocabulary.
    public func callAsFunction(inputIds: Tensor, attentionMask: Tensor? = nil, pixelValues: Tensor? = nil,
                               aspectRatioIds: Tensor? = nil, aspectRatioMask: Tensor? = nil,
                               crossAttentionMask: Tensor? = nil, cache: MllamaCache? = nil, imageRowGroups: Int = 1) -> Tensor {
        languageModel.logits(hiddenStates: hiddenStates(
            inputIds: inputIds, attentionMask: attentionMask, pixelValues: pixelValues, aspectRatioIds: aspectRatioIds,
            aspectRatioMask: aspectRatioMask, crossAttentionMask: crossAttentionMask, cache: cache, imageRowGroups: imageRowGroups))
    }

    /// The final-normed hidden states `[B, T, D]` (same arguments as the call). With `prefix`
    /// (from ``frozenPrefixStates(inputIds:attentionMask:)`` of this model, or of one with the same
    /// weights there, on the same ids and mask; no cache), the layers it ran are not run again.
    public func hiddenStates(inputIds: Tensor, attentionMask: Tensor? = nil, pixelValues: Tensor? = nil,
                             aspectRatioIds: Tensor? = nil, aspectRatioMask: Tensor? = nil,
                             crossAttentionMask: Tensor? = nil, cache: MllamaCache? = nil, imageRowGroups: Int = 1,
                             after prefix: FrozenPrefixStates? = nil) -> Tensor {
        ensure(inputIds.rank == 2, "input_ids must be [B, T], got \(inputIds.shape)")
        let (b, t) = (inputIds.shape[0], inputIds.shape[1])
        ensure(prefix == nil || (cache == nil && prefix!.states.shape[0] == b && prefix!.states.shape[1] == t),
               "frozen-prefix states \(prefix!.states.shape) do not belong to input_ids \(inputIds.shape) (or a cache was given)")
        let cached = cache?.length ?? 0
        let embeddings = prefix?.states ?? languageModel.model.tokenEmbedding(inputIds)    // (B, T, D)
        let (positions, mask) = LlamaForCausalLM.positionsAndMask(batch: b, newTokens: t, attentionMask: attentionMask,
                                                                  cachedLength: cached)
        var imageStates: Tensor? = nil
        if let pixelValues {
            ensure(aspectRatioIds != nil, "aspect_ratio_ids must be given with pixel_values")
            ensure(imageRowGroups >= 1 && pixelValues.shape[0] * imageRowGroups == b,
                   "pixel_values has batch \(pixelValues.shape[0]), input_ids \(b)"
                   + (imageRowGroups == 1 ? "" : " in \(imageRowGroups) groups of rows sharing images"))
            let encoded = self.imageStates(pixelValues: pixelValues, aspectRatioIds: aspectRatioIds!,
                                           aspectRatioMask: aspectRatioMask)               // (B / k, S, D)
            // Row i of every group attends to image row i: encoded once, its gradient summed over the groups.
            imageStates = imageRowGroups == 1 ? encoded
                : Tensor.concatenate(Array(repeating: encoded, count: imageRowGroups), axis: 0)   // (B, S, D)
            // New images replace whatever the cache held.
            cache?.imageKeysValues = [:]
            cache?.lastCrossAttentionRow = nil
        }
        var crossAttention: CrossAttentionInputs? = nil
        if imageStates != nil || cache?.hasImage == true {
            let rows = crossAttentionRows(crossAttentionMask, batch: b, newTokens: t, cachedLength: cached, cache: cache)
            let prepared = rows.map {
                PreparedCrossAttentionMask(tiles: $0, tokensPerTile: visionModel.tokensPerTile, masking: crossAttentionMasking,
                                           dtype: embeddings.dtype)
            } ?? PreparedCrossAttentionMask()
            crossAttention = CrossAttentionInputs(imageStates: imageStates, mask: prepared)
        }
        return languageModel.model(embeddings: embeddings, positions: positions, mask: mask,
                                   crossAttention: crossAttention, cache: cache, firstLayer: prefix?.nextLayer ?? 0)
    }

    /// The layers no image reaches: the token embedding and the self-attention layers before the
    /// first cross-attention layer.
    var frozenPrefixLayerCount: Int { config.textConfig.crossAttentionLayers.min() ?? config.textConfig.llama.numHiddenLayers }

    /// The weights of the layers no image reaches (``frozenPrefixLayerCount``), by name.
    public var frozenPrefixParameters: [(name: String, tensor: Tensor)] {
        let text = languageModel.model
        return text.tokenEmbedding.parameters().map { ("embed_tokens.\($0.name)", $0.tensor) }
            + (0..<frozenPrefixLayerCount).flatMap { index in
                text.layers[index].parameters().map { ("layers.\(index).\($0.name)", $0.tensor) }
            }
    }

    /// The states entering the first cross-attention layer for `inputIds` (`[B, T]`): the token
    /// embedding and the self-attention layers before it, which read no image. `nil` when one of
    /// their weights trains (such a prefix is the model's own) or there are no such layers.
    public func frozenPrefixStates(inputIds: Tensor, attentionMask: Tensor? = nil) -> FrozenPrefixStates? {
        let count = frozenPrefixLayerCount
        guard count > 0, !frozenPrefixParameters.contains(where: { $0.tensor.requiresGrad }) else { return nil }
        let (positions, mask) = LlamaForCausalLM.positionsAndMask(batch: inputIds.shape[0], newTokens: inputIds.shape[1],
                                                                  attentionMask: attentionMask, cachedLength: 0)
        let states = languageModel.model(embeddings: languageModel.model.tokenEmbedding(inputIds), positions: positions, mask: mask,
                                         crossAttention: nil, cache: nil, endLayer: count)
        return FrozenPrefixStates(states: states, nextLayer: count)
    }

    /// The tile-mask rows `[B, T, N, X]` of the new tokens, and the last row remembered in the cache.
    private func crossAttentionRows(_ mask: Tensor?, batch: Int, newTokens: Int, cachedLength: Int,
                                    cache: MllamaCache?) -> Tensor? {
        var rows: Tensor? = nil
        if let mask {
            ensure(mask.rank == 4 && mask.shape[0] == batch,
                   "cross_attention_mask must be [B, T, N, X] with B = \(batch), got \(mask.shape)")
            if mask.shape[1] == cachedLength + newTokens {
                rows = mask.slice(axis: 1, cachedLength..<(cachedLength + newTokens))
            } else {
                ensure(mask.shape[1] == newTokens,
                       "cross_attention_mask covers \(mask.shape[1]) tokens; expected \(cachedLength + newTokens) (cached + new) or \(newTokens) (new)")
                rows = mask
            }
        } else if let last = cache?.lastCrossAttentionRow {
            rows = last.expanded(to: [batch, newTokens, last.shape[2], last.shape[3]])
        }
        if let rows, let cache { cache.lastCrossAttentionRow = rows.slice(axis: 1, (newTokens - 1)..<newTokens).contiguous() }
        return rows?.contiguous()
    }

    /// A cache for `batch` rows of up to `capacity` text positions.
    public func makeCache(batch: Int, capacity: Int) -> MllamaCache {
        let llama = config.textConfig.llama
        let selfLayers = llama.numHiddenLayers - Set(config.textConfig.crossAttentionLayers).count
        return MllamaCache(selfAttention: KVCache(layerCount: selfLayers, batch: batch, kvHeads: llama.numKeyValueHeads,
                                                  capacity: capacity, headDimension: llama.headDim))
    }
}

// MARK: - Training

/// Groups of parameters that fine-tuning Mllama trains, selected by name pattern.
public enum MllamaParameterGroup: String, CaseIterable, Sendable {
    /// Every parameter of the cross-attention decoder layers (attention, gates, norms, MLP).
    case crossAttentionLayers
    /// The whole image encoder.
    case visionModel
    /// The multi-modal projector.
    case projector
    /// The 8 embedding rows after the text vocabulary (`embed_tokens.extra_weight`).
    case extraEmbeddingRows
    /// The text model's own weights: self-attention layers, text embedding rows, final norm, head.
    case textModel
}

extension MllamaForConditionalGeneration {
    /// Name patterns (for `freeze(matching:)` / `unfreeze(matching:)`) of a parameter group.
    public func patterns(for group: MllamaParameterGroup) -> [String] {
        let crossLayers = config.textConfig.crossAttentionLayers
        switch group {
        case .crossAttentionLayers: return crossLayers.map { "language_model.model.layers.\($0).**" }
        case .visionModel: return ["vision_model.**"]
        case .projector: return ["multi_modal_projector.**"]
        case .extraEmbeddingRows: return ["language_model.model.embed_tokens.extra_weight"]
        case .textModel:
            let selfLayers = (0..<config.textConfig.llama.numHiddenLayers).filter { !crossLayers.contains($0) }
            return selfLayers.map { "language_model.model.layers.\($0).**" }
                + ["language_model.model.embed_tokens.weight", "language_model.model.norm.weight", "language_model.lm_head.weight"]
        }
    }

    /// Freezes everything, then makes the parameters of `groups` trainable: each becomes an owned
    /// float32 copy (a loaded weight may be bf16 or a read-only mapping) that requires gradients.
    /// - Returns: the names made trainable.
    @discardableResult
    public func setTrainable(_ groups: [MllamaParameterGroup]) -> [String] {
        makeTrainable(matching: groups.flatMap { patterns(for: $0) })
    }
}

// MARK: - Generation

extension MllamaForConditionalGeneration: IncrementalDecoder {
    /// Text-only decoding (or continuing from a cache that already holds an image).
    public func decode(_ ids: Tensor, attentionMask: Tensor, cache: MllamaCache) -> Tensor {
        let hidden = hiddenStates(inputIds: ids, attentionMask: attentionMask, cache: cache)   // (B, T, D)
        return languageModel.logits(hiddenStates: hidden.slice(axis: 1, (hidden.shape[1] - 1)..<hidden.shape[1]))  // (B, 1, V)
    }

    /// A decoder for ``generate(with:prompts:maxNewTokens:sampling:stopTokens:padToken:onStep:)``
    /// that sees these images: they are encoded once, with the prompt, and each cross-attention
    /// layer's keys and values are cached; generated tokens repeat the prompt's last
    /// cross-attention mask row.
    ///
    /// `crossAttentionMask` `[B, T, N, X]` must line up with the prompts as `generate` lays them
    /// out: left-padded to the longest prompt (rows of padding all 0).
    public func conditioned(pixelValues: Tensor, aspectRatioIds: Tensor, aspectRatioMask: Tensor? = nil,
                            crossAttentionMask: Tensor) -> MllamaImageDecoder {
        MllamaImageDecoder(model: self, pixelValues: pixelValues, aspectRatioIds: aspectRatioIds,
                           aspectRatioMask: aspectRatioMask, crossAttentionMask: crossAttentionMask)
    }
}

extension MllamaForConditionalGeneration {
    /// Per-prompt tile masks `[Tᵢ, N, X]` stacked into the `[B, T, N, X]` batch that ``conditioned(pixelValues:aspectRatioIds:aspectRatioMask:crossAttentionMask:)``
    /// needs for prompts of different lengths: each left-padded with zero rows to the longest
    /// prompt, as `generate` left-pads the prompts themselves.
    public static func leftPaddedCrossAttentionMask(_ masks: [Tensor]) -> Tensor {
        ensure(!masks.isEmpty && masks.allSatisfy { $0.rank == 3 && Array($0.shape.dropFirst()) == Array(masks[0].shape.dropFirst()) },
               "cross-attention masks must all be [T, N, X] with the same N and X, got \(masks.map(\.shape))")
        let length = masks.map { $0.shape[0] }.max()!, tiles = masks[0].shape[1] * masks[0].shape[2]
        var values: [Int] = []
        for mask in masks {
            values += Array(repeating: 0, count: (length - mask.shape[0]) * tiles)
            values += mask.dtype.isFloatingPoint ? mask.doubles().map { $0 != 0 ? 1 : 0 } : mask.integers()
        }
        return Tensor(indices: values, shape: [masks.count, length, masks[0].shape[1], masks[0].shape[2]])
    }
}

/// Mllama with a fixed set of images, for ``generate(with:prompts:maxNewTokens:sampling:stopTokens:padToken:onStep:)``.
public final class MllamaImageDecoder: IncrementalDecoder {
    public let model: MllamaForConditionalGeneration
    public let pixelValues: Tensor
    public let aspectRatioIds: Tensor
    public let aspectRatioMask: Tensor?
    public let crossAttentionMask: Tensor

    init(model: MllamaForConditionalGeneration, pixelValues: Tensor, aspectRatioIds: Tensor, aspectRatioMask: Tensor?,
         crossAttentionMask: Tensor) {
        self.model = model
        self.pixelValues = pixelValues
        self.aspectRatioIds = aspectRatioIds
        self.aspectRatioMask = aspectRatioMask
        self.crossAttentionMask = crossAttentionMask
    }

    public func makeCache(batch: Int, capacity: Int) -> MllamaCache { model.makeCache(batch: batch, capacity: capacity) }

    /// The prompt step encodes the images; later steps read the cached image keys and values.
    public func decode(_ ids: Tensor, attentionMask: Tensor, cache: MllamaCache) -> Tensor {
        let isPrompt = cache.length == 0
        let hidden = model.hiddenStates(inputIds: ids, attentionMask: attentionMask,
                                        pixelValues: isPrompt ? pixelValues : nil, aspectRatioIds: aspectRatioIds,
                                        aspectRatioMask: aspectRatioMask,
                                        crossAttentionMask: isPrompt ? crossAttentionMask : nil, cache: cache)  // (B, T, D)
        return model.languageModel.logits(hiddenStates: hidden.slice(axis: 1, (hidden.shape[1] - 1)..<hidden.shape[1]))
    }
}

extension Tensor {
    /// A 16-bit float tensor (a frozen bf16 or f16 weight) upcast to float32 for element-wise use;
    /// any other tensor as it is. Only small parameters (gates, class and position embeddings)
    /// go through this — matrices stay 16-bit and `linear` upcasts them block by block.
    var upcast: Tensor { dtype == .bfloat16 || dtype == .float16 ? converted(to: .float32) : self }
}
