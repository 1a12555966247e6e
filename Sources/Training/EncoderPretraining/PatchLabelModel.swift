import Foundation
import Layers
import Models
import TensorCore

// Shapes: B images, P patches of a tile, W the encoder's output width, C a field's classes.

/// Llama 3.2 Vision's image encoder with one linear head per label field on its output patch
/// tokens: the model an `encoder` stage trains to name what covers every patch. The heads only
/// serve the stage; its output is the fusion model alone (``model``), encoder updated.
///
/// ```swift
/// let labelled = PatchLabelModel(model: mllama, classCounts: classes.classCounts, seed: 0)
/// let logits = labelled.patchLogits(batch.inputs)     // per field: (B·P, C)
/// ```
public final class PatchLabelModel: Module, TrainableLanguageModel {
    /// The trainable group of the heads.
    public static let headGroup = "patchHeads"

    public let model: MllamaForConditionalGeneration
    /// One `W → C` head per field.
    public let heads: [Linear]

    /// Fresh heads (seeded normal, standard deviation 0.02, zero bias) on `model`.
    public init(model: MllamaForConditionalGeneration, classCounts: [Int], seed: UInt64) {
        self.model = model
        heads = classCounts.enumerated().map { index, classes in
            Linear(inFeatures: model.visionModel.outputWidth, outFeatures: classes, bias: true,
                   factory: ParameterFactory(.random(seed: seed &+ UInt64(index), standardDeviation: 0.02)))
        }
        super.init()
    }

    /// Patches of one tile.
    public var patchesPerTile: Int { model.visionModel.tokensPerTile - 1 }

    /// Each field's class scores on every patch of every tile slot of each image (class tokens
    /// dropped): `(B·X·P, C)` per field, image by image, tile by tile, patches row-major.
    public func patchLogits(_ inputs: ModelInputs) -> [Tensor] {
        guard let pixels = inputs.pixelValues, let ids = inputs.aspectRatioIDs else {
            preconditionFailure("patch labelling needs images")
        }
        let features = model.visionModel(pixelValues: pixels, aspectRatioIds: ids, aspectRatioMask: inputs.aspectRatioMask)  // (B, 1, X, L, W)
        let (b, x, p, w) = (features.shape[0], features.shape[2], patchesPerTile, features.shape[4])
        let patches = features.slice(axis: 3, 1..<(1 + p)).contiguous().reshaped([b * x * p, w])
        return heads.map { $0(patches) }
    }

    // MARK: TrainableLanguageModel

    public func hiddenStates(_ inputs: ModelInputs) -> Tensor { model.hiddenStates(inputs) }
    public func logits(hiddenStates: Tensor) -> Tensor { model.logits(hiddenStates: hiddenStates) }
    public var parameterGroupNames: [String] { model.parameterGroupNames + [Self.headGroup] }
    public func parameterPatterns(forGroup name: String) -> [String]? {
        if name == Self.headGroup { return ["heads.**"] }
        return model.parameterPatterns(forGroup: name)?.map { "model." + $0 }
    }
    public func setActivationCheckpointing(_ enabled: Bool) { model.setActivationCheckpointing(enabled) }
}
