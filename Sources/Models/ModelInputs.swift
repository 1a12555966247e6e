import Foundation
import Layers
import TensorCore

// Shapes: B batch, T text tokens, N images per sample, X tiles per image, C channels, H×W a tile,
// D text width, V text vocabulary.

/// Everything a language or vision-language model's forward pass takes, by name, whatever the model
/// family: the one input type every training stage, evaluation and generation hands to a model.
///
/// ```swift
/// let inputs = ModelInputs(inputIDs: ids, attentionMask: mask)           // text only
/// let logits = model.logits(hiddenStates: model.hiddenStates(inputs))    // (B, T, V)
/// ```
public struct ModelInputs {
    /// (B, T) int64 token ids.
    public var inputIDs: Tensor
    /// (B, T) int64: 1 on real tokens, 0 on padding; nil means all ones.
    public var attentionMask: Tensor?
    /// Mllama: (B, N, X, C, H, W) float32 tiles. LLaVA: (I, C, H, W), every image of the batch in
    /// the order its `<image>` tokens appear. nil for text only.
    public var pixelValues: Tensor?
    /// (B, N) int64 tile-arrangement ids (Mllama).
    public var aspectRatioIDs: Tensor?
    /// (B, N, X) int64: 1 for real tiles (Mllama).
    public var aspectRatioMask: Tensor?
    /// (B, T, N, X) int64: which tokens see which tiles (Mllama).
    public var crossAttentionMask: Tensor?
    /// Mllama: the rows come in this many groups of B / k that show the same images in the same
    /// order, and `pixelValues`, `aspectRatioIDs` and `aspectRatioMask` hold the first group's only:
    /// each image is encoded once and its states serve row i of every group (a preference batch's
    /// chosen, rejected and edited rows). 1: every row has its own images.
    public var imageRowGroups: Int = 1

    public init(inputIDs: Tensor, attentionMask: Tensor? = nil, pixelValues: Tensor? = nil, aspectRatioIDs: Tensor? = nil,
                aspectRatioMask: Tensor? = nil, crossAttentionMask: Tensor? = nil) {
        self.inputIDs = inputIDs
        self.attentionMask = attentionMask
        self.pixelValues = pixelValues
        self.aspectRatioIDs = aspectRatioIDs
        self.aspectRatioMask = aspectRatioMask
        self.crossAttentionMask = crossAttentionMask
    }

    /// Batch size B.
    public var batchSize: Int { inputIDs.shape[0] }
    /// Text length T.
    public var length: Int { inputIDs.shape[1] }
    /// Whether any image is attached.
    public var hasImages: Bool { pixelValues != nil }

    /// The same inputs with the images removed (what the text model alone sees).
    public var withoutImages: ModelInputs {
        ModelInputs(inputIDs: inputIDs, attentionMask: attentionMask)
    }
}

/// A causal language model that training stages drive through one interface: hidden states, logits
/// and named groups of parameters to train. Llama, Mllama and LLaVA conform, so stages are
/// written once, not once per model.
public protocol TrainableLanguageModel: Module {
    /// The final-normed hidden states (B, T, D).
    func hiddenStates(_ inputs: ModelInputs) -> Tensor
    /// Logits (…, V) over the text vocabulary for hidden states (…, D).
    func logits(hiddenStates: Tensor) -> Tensor
    /// The names of the parameter groups a recipe may list as trainable, in a stable order.
    var parameterGroupNames: [String] { get }
    /// Name patterns (as ``Module/freeze(matching:)`` takes them) of a group; nil for an unknown name.
    func parameterPatterns(forGroup name: String) -> [String]?
    /// Recompute every layer's activations in the backward pass instead of keeping them from the
    /// forward pass: less memory, one more forward pass of compute (``checkpointed(_:parameters:_:)``).
    func setActivationCheckpointing(_ enabled: Bool)
    /// The weights of the leading layers that read no image (see ``FrozenPrefixStates``); empty
    /// when the model has no such layers to share.
    var frozenPrefixParameters: [(name: String, tensor: Tensor)] { get }
    /// The states after those layers, or `nil` (none, or one of their weights trains).
    func frozenPrefixStates(_ inputs: ModelInputs) -> FrozenPrefixStates?
    /// The final-normed hidden states (B, T, D) continuing from `prefix`, computed for the same
    /// inputs by a model whose ``frozenPrefixParameters`` have the same bits as this one's.
    func hiddenStates(_ inputs: ModelInputs, after prefix: FrozenPrefixStates) -> Tensor
}

extension TrainableLanguageModel {
    /// Logits (B, T, V) of a forward pass.
    public func logits(_ inputs: ModelInputs) -> Tensor { logits(hiddenStates: hiddenStates(inputs)) }

    public var frozenPrefixParameters: [(name: String, tensor: Tensor)] { [] }
    public func frozenPrefixStates(_ inputs: ModelInputs) -> FrozenPrefixStates? { nil }
    public func hiddenStates(_ inputs: ModelInputs, after prefix: FrozenPrefixStates) -> Tensor { hiddenStates(inputs) }

    /// Whether `other` has this model's frozen prefix, bit for bit, so that one may continue from
    /// the other's ``frozenPrefixStates(_:)``: the same names, shapes, types and bytes.
    public func sharesFrozenPrefix(with other: some TrainableLanguageModel) -> Bool {
        let mine = frozenPrefixParameters, theirs = other.frozenPrefixParameters
        guard !mine.isEmpty, mine.count == theirs.count else { return false }
        return zip(mine, theirs).allSatisfy { a, b in
            a.name == b.name && a.tensor.shape == b.tensor.shape && a.tensor.dtype == b.tensor.dtype
                && sameBytes(a.tensor.contiguous(), b.tensor.contiguous())
        }
    }
}

private func sameBytes(_ a: Tensor, _ b: Tensor) -> Bool {
    memcmp(a.rawPointer, b.rawPointer, a.elementCount * a.dtype.byteSize) == 0
}

/// The hidden states after a model's leading layers that read no image — for Mllama the token
/// embedding and the self-attention layers before the first cross-attention layer. A DPO policy and
/// its reference share those frozen weights, so the states are computed once per batch and both
/// continue from them (``TrainableLanguageModel/hiddenStates(_:after:)``).
public struct FrozenPrefixStates {
    /// (B, T, D): what enters layer ``nextLayer``.
    public let states: Tensor
    /// The first layer the prefix did not run.
    public let nextLayer: Int

    public init(states: Tensor, nextLayer: Int) {
        self.states = states
        self.nextLayer = nextLayer
    }
}

extension LlamaForCausalLM: TrainableLanguageModel {
    public func hiddenStates(_ inputs: ModelInputs) -> Tensor {
        ensure(inputs.pixelValues == nil, "a Llama text model takes no images")
        ensure(inputs.imageRowGroups == 1, "a Llama text model takes no images")
        return hiddenStates(inputs.inputIDs, attentionMask: inputs.attentionMask)
    }

    public var parameterGroupNames: [String] { ["textModel"] }

    public func parameterPatterns(forGroup name: String) -> [String]? {
        name == "textModel" ? ["**"] : nil
    }

    public func setActivationCheckpointing(_ enabled: Bool) { model.activationCheckpointing = enabled }
}

extension MllamaForConditionalGeneration: TrainableLanguageModel {
    public func hiddenStates(_ inputs: ModelInputs) -> Tensor {
        hiddenStates(inputIds: inputs.inputIDs, attentionMask: inputs.attentionMask, pixelValues: inputs.pixelValues,
                     aspectRatioIds: inputs.aspectRatioIDs, aspectRatioMask: inputs.aspectRatioMask,
                     crossAttentionMask: inputs.crossAttentionMask, imageRowGroups: inputs.imageRowGroups)
    }

    public func logits(hiddenStates: Tensor) -> Tensor { languageModel.logits(hiddenStates: hiddenStates) }

    public var parameterGroupNames: [String] { MllamaParameterGroup.allCases.map(\.rawValue) }

    public func parameterPatterns(forGroup name: String) -> [String]? {
        MllamaParameterGroup(rawValue: name).map { patterns(for: $0) }
    }

    public func setActivationCheckpointing(_ enabled: Bool) {
        languageModel.model.activationCheckpointing = enabled
        visionModel.transformer.activationCheckpointing = enabled
        visionModel.globalTransformer.activationCheckpointing = enabled
    }

    public func frozenPrefixStates(_ inputs: ModelInputs) -> FrozenPrefixStates? {
        frozenPrefixStates(inputIds: inputs.inputIDs, attentionMask: inputs.attentionMask)
    }

    public func hiddenStates(_ inputs: ModelInputs, after prefix: FrozenPrefixStates) -> Tensor {
        hiddenStates(inputIds: inputs.inputIDs, attentionMask: inputs.attentionMask, pixelValues: inputs.pixelValues,
                     aspectRatioIds: inputs.aspectRatioIDs, aspectRatioMask: inputs.aspectRatioMask,
                     crossAttentionMask: inputs.crossAttentionMask, imageRowGroups: inputs.imageRowGroups, after: prefix)
    }
}
