import Checkpoint
import Foundation
import Layers
import Models
import TensorCore

// Shapes: B rows, T tokens, D text width.

/// A vision reward model: Llama 3.2 Vision with a scalar head `Linear(D, 1)` (no bias) read at
/// each row's last real (non-padding) token, as transformers' `…ForSequenceClassification` models do.
///
/// Parameter names are the fusion model's under `model.` and the head's `score.weight`. On disk a
/// reward model is a Mllama checkpoint folder (its text-only logits unchanged, loadable by every
/// tool that loads the stage's input) plus `reward_head.safetensors` holding `score.weight` (1, D).
///
/// ```swift
/// let rewardModel = try VisionRewardModel.load(directory: url)
/// let rewards = rewardModel.rewards(batch.inputs)        // (B)
/// ```
public final class VisionRewardModel: Module, TrainableLanguageModel {
    /// The file beside the Mllama checkpoint that holds the head.
    public static let headFileName = "reward_head.safetensors"
    /// The head's tensor name (transformers' sequence-classification name).
    public static let headTensorName = "score.weight"
    /// The trainable group of the head.
    public static let headGroup = "rewardHead"

    public let model: MllamaForConditionalGeneration
    /// `D → 1`, no bias.
    public let score: Linear

    /// A fresh head (seeded normal, standard deviation 0.02 as transformers initialises it) on `model`.
    public init(model: MllamaForConditionalGeneration, seed: UInt64) {
        self.model = model
        score = Linear(inFeatures: model.config.textConfig.llama.hiddenSize, outFeatures: 1, bias: false,
                       factory: ParameterFactory(.random(seed: seed, standardDeviation: 0.02)))
        super.init()
    }

    /// A trained reward model: the Mllama folder and its `reward_head.safetensors`.
    /// - Throws: ``CheckpointError`` naming the file when the head is missing or mis-shaped.
    public static func load(directory: URL) throws -> VisionRewardModel {
        guard let mllama = try LoadedModel.load(directory: directory).model as? MllamaForConditionalGeneration else {
            throw CheckpointError(file: directory.path, reason: "a reward model is an mllama checkpoint with \(headFileName)")
        }
        let headURL = directory.appendingPathComponent(headFileName)
        guard FileManager.default.fileExists(atPath: headURL.path) else {
            throw CheckpointError(file: headURL.path, reason: "missing: not a reward model folder (a reward stage writes it)")
        }
        let file = try SafetensorsCheckpoint(path: headURL.path)
        let width = mllama.config.textConfig.llama.hiddenSize
        guard file.names.contains(headTensorName), let head = try? file.tensor(headTensorName), head.shape == [1, width] else {
            throw CheckpointError(file: headURL.path, reason: "needs '\(headTensorName)' of shape [1, \(width)]")
        }
        let rewardModel = VisionRewardModel(model: mllama, seed: 0)
        rewardModel.score.weight = head.converted(to: .float32).detached()
        return rewardModel
    }

    /// Writes the Mllama checkpoint (`config.json`, `model.safetensors`) and `reward_head.safetensors`.
    public func save(to directory: URL) throws {
        try model.save(to: directory)
        try writeSafetensors(tensors: [Self.headTensorName: score.weight.detached()], metadata: ["format": "pt"],
                             to: directory.appendingPathComponent(Self.headFileName))
    }

    /// The reward of each row, read at its last real token: `(B)`.
    public func rewards(_ inputs: ModelInputs) -> Tensor {
        let (b, t) = (inputs.batchSize, inputs.length)
        let hidden = model.hiddenStates(inputs)                                    // (B, T, D)
        let scores = score(hidden).reshaped([b, t])                                // (B, T)
        let real = inputs.attentionMask?.integers() ?? Array(repeating: 1, count: b * t)
        var pick = [Double](repeating: 0, count: b * t)
        for row in 0..<b {
            let last = (0..<t).last { real[row * t + $0] != 0 } ?? (t - 1)
            pick[row * t + last] = 1
        }
        return (scores * Tensor(pick, shape: [b, t]).converted(to: scores.dtype)).sum(axes: [1])   // (B)
    }

    // MARK: TrainableLanguageModel

    public func hiddenStates(_ inputs: ModelInputs) -> Tensor { model.hiddenStates(inputs) }
    public func logits(hiddenStates: Tensor) -> Tensor { model.logits(hiddenStates: hiddenStates) }
    public var parameterGroupNames: [String] { model.parameterGroupNames + [Self.headGroup] }
    public func parameterPatterns(forGroup name: String) -> [String]? {
        if name == Self.headGroup { return [Self.headTensorName] }
        return model.parameterPatterns(forGroup: name)?.map { "model." + $0 }
    }

    public func setActivationCheckpointing(_ enabled: Bool) { model.setActivationCheckpointing(enabled) }
}
