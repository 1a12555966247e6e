import Foundation
import TensorCore

/// What a stage does: the loss it trains and the data it reads.
public enum StageKind: String, Codable, Sendable, CaseIterable {
    /// The image encoder alone, with a head per label field, trained to name what covers each
    /// patch of a regions file (image-encoder pretraining; the heads are dropped after the stage).
    case encoder
    /// Image–caption pairs; the caption tokens are learned (Meta's pretraining stages).
    case pretrain
    /// Conversations; the assistant turns are learned (supervised fine-tuning).
    case sft
    /// A vision reward model trained on preference pairs (Bradley–Terry); see Docs/training.md.
    case reward
    /// Sample K answers per prompt, keep the best by the reward model, then SFT on them.
    case rejection
    /// Direct preference optimisation against a frozen (or EMA) reference.
    case dpo
}

/// How the learning rate moves over a stage's optimiser steps.
public enum ScheduleKind: String, Codable, Sendable, CaseIterable {
    case constant, linear, cosine
}

/// One dataset of a stage, with its share of the mix.
public struct DatasetSpec: Codable, Sendable, Equatable {
    /// The file (JSONL, LLaVA JSON, a tar shard or shard pattern), relative to the recipe's data root.
    public var path: String
    /// Relative sampling weight among the stage's datasets.
    public var weight: Double = 1
    /// An explicit format name; nil detects it from the file.
    public var format: String?

    public init(path: String, weight: Double = 1, format: String? = nil) {
        self.path = path
        self.weight = weight
        self.format = format
    }
}

/// Everything one stage of a recipe needs, with defaults. Keys in recipes are the snake_case
/// names of these properties (see ``StageSettings/fieldNames``).
public struct StageSettings: Codable, Sendable, Equatable {
    public var name: String
    public var kind: StageKind
    /// Training data and their mixing weights.
    public var datasets: [DatasetSpec] = []
    /// Held-out data for evaluation (loss, and exact match for question–answer data).
    public var evalDatasets: [DatasetSpec] = []
    /// Parameter groups that train (the model's ``TrainableLanguageModel/parameterGroupNames``).
    public var trainable: [String] = []

    public var learningRate: Double = 1e-4
    public var weightDecay: Double = 0.01
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var epsilon: Double = 1e-8
    public var schedule: ScheduleKind = .cosine
    public var warmupSteps: Int = 0
    /// The cosine schedule's floor as a fraction of the peak.
    public var minLearningRateRatio: Double = 0
    /// Global gradient-norm clipping; 0 turns it off.
    public var maxGradNorm: Double = 1
    /// Factors on the learning rate for some parameters: keys are parameter groups (as in
    /// `trainable`) or parameter-name patterns (`**.cross_attn_attn_gate`); the first key that
    /// matches a parameter, in sorted order, applies (LLaVA's `mm_projector_lr` is one such factor).
    public var learningRateMultipliers: [String: Double] = [:]
    /// Recompute activations in the backward pass instead of keeping them (less memory, more compute).
    public var activationCheckpointing = false
    /// The linear layers' matrix products while training: `bf16` rounds their operands to bfloat16
    /// and sums in float32 (master weights and AdamW state stay float32); nil means float32 (and
    /// keeps the digests of recipes written before the key existed).
    public var precision: MatrixPrecision?

    public var microBatchSize: Int = 4
    public var gradientAccumulation: Int = 1
    /// Samples longer than this many tokens are skipped (counted), never truncated.
    public var maxLength: Int = 512
    public var maxImages: Int = 1
    /// Optimiser steps; when 0, `epochs` decides.
    public var steps: Int = 0
    public var epochs: Double = 0

    /// Evaluate every this many steps (and at the end); 0: only at the end.
    public var evalEvery: Int = 0
    /// Held-out samples an evaluation reads (0: all).
    public var evalSamples: Int = 0
    /// Longest greedy answer when scoring exact match.
    public var evalMaxNewTokens: Int = 16
    /// Write a run checkpoint every this many steps (and at the end).
    public var checkpointEvery: Int = 50
    /// Report a metrics line every this many steps.
    public var logEvery: Int = 1
    public var seed: UInt64 = 0
    /// Stop the stage when more than this share of samples had to be skipped.
    public var maxSkipShare: Double = 0.01
    /// Train with every image replaced by a black one of the same size: the ablation that shows
    /// what the images add (the same recipe, nothing to see). Absent when false, so that older
    /// runs' settings digests stay valid.
    public var blankImages: Bool? = nil
    /// Stop the stage after this many consecutive steps with a non-finite loss or gradient.
    public var maxNonFiniteSteps: Int = 3
    /// The earlier stage whose output this stage starts from (nil: the previous stage's). A
    /// rejection-sampling stage after a reward stage starts from the SFT stage's policy, not from
    /// the reward model.
    public var inputStage: String?
    /// The keys of the post-training stages (nil for pretraining and SFT, so their digests are unchanged).
    public var postTraining: PostTrainingSettings?
    /// `language_model` and the `lora_*` keys (``LanguageModelTraining``); nil: frozen, and the
    /// digests of recipes written before the keys existed are unchanged.
    public var languageModel: LanguageModelTraining?

    /// The post-training keys, with defaults when the recipe set none.
    public var post: PostTrainingSettings { postTraining ?? PostTrainingSettings() }

    public init(name: String, kind: StageKind) {
        self.name = name
        self.kind = kind
    }

    /// The total number of optimiser steps for `trainingSamples` samples.
    public func totalSteps(trainingSamples: Int) -> Int {
        if steps > 0 { return steps }
        let perStep = microBatchSize * gradientAccumulation
        return max(1, Int((epochs * Double(trainingSamples) / Double(perStep)).rounded(.up)))
    }

    /// Checks values that no type can, naming the field.
    public func validationProblems() -> [(field: String, reason: String)] {
        var problems: [(String, String)] = []
        if datasets.isEmpty { problems.append(("datasets", "a stage needs at least one dataset")) }
        if learningRate <= 0 || !learningRate.isFinite { problems.append(("learning_rate", "must be positive")) }
        if microBatchSize < 1 { problems.append(("micro_batch_size", "must be at least 1")) }
        if gradientAccumulation < 1 { problems.append(("gradient_accumulation", "must be at least 1")) }
        if steps < 0 { problems.append(("steps", "must not be negative")) }
        if steps == 0 && epochs <= 0 { problems.append(("steps", "give steps or epochs")) }
        if maxLength < 2 { problems.append(("max_length", "must be at least 2")) }
        if !(0...1).contains(maxSkipShare) { problems.append(("max_skip_share", "must be between 0 and 1")) }
        if !(0..<1).contains(beta1) || !(0..<1).contains(beta2) { problems.append(("beta1", "betas must be in [0, 1)")) }
        if [.reward, .rejection, .dpo].contains(kind) { problems += post.validationProblems(kind: kind) }
        if let languageModel { problems += languageModel.problems(kind: kind, trainable: trainable) }
        if kind == .reward && !trainable.contains(VisionRewardModel.headGroup) {
            problems.append(("trainable", "a reward stage trains its scalar head: add \(VisionRewardModel.headGroup) (Meta also trained the image encoder and the cross-attention layers)"))
        }
        if kind == .encoder && !trainable.contains(PatchLabelModel.headGroup) {
            problems.append(("trainable", "an encoder stage trains its patch-label heads: add \(PatchLabelModel.headGroup) (and visionModel)"))
        }
        for dataset in datasets + evalDatasets where dataset.weight <= 0 {
            problems.append(("datasets", "'\(dataset.path)' has weight \(dataset.weight); weights must be positive"))
        }
        return problems
    }

    /// A digest of the settings: a finished stage is skipped on a rerun only when it is unchanged.
    public var digest: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = (try? encoder.encode(self)) ?? Data()
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325     // FNV-1a, 64 bits
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return String(format: "%016llx", hash)
    }
}

extension Array where Element == StageSettings {
    /// The stage whose output the stage at `index` starts from: its `input_stage`, else the stage
    /// before it; nil for the first stage, which starts from the base model.
    public func inputStageName(at index: Int) -> String? {
        index > 0 ? self[index].inputStage ?? self[index - 1].name : nil
    }
}
