import Foundation
import Yams

/// How a rejection-sampling stage decides that a candidate answer is correct, where the data has a
/// reference answer.
public enum AnswerCheck: String, Codable, Sendable, CaseIterable {
    /// ``normalizedAnswer(_:)`` of both sides equal.
    case exact
    /// The first standalone capital letter A–H (a multiple-choice answer) equals the reference's.
    case choice
    /// The candidate matches `answer_pattern`, with `{answer}` replaced by the escaped reference.
    case regex
    /// No check: every candidate goes to the reward model.
    case none
}

/// The settings of the post-training stages (`reward`, `dpo`, `rejection`), keys of a recipe stage
/// like the others. Absent from pretraining and SFT stages (so their settings digests are unchanged).
public struct PostTrainingSettings: Codable, Sendable, Equatable {
    // Reward model.
    /// Subtracted from `r_c − r_r` inside the Bradley–Terry loss (TRL's `margin`).
    public var rewardMargin: Double = 0
    /// Llama 3's regulariser on the squared mean reward (TRL's `center_rewards_coefficient`); 0: off.
    public var centerRewardsCoefficient: Double = 0

    // DPO.
    /// β of the sigmoid DPO loss.
    public var dpoBeta: Double = 0.1
    /// Weight of the NLL term on the chosen responses (Llama 3: 0.2; TRL's `"sft"` loss weight).
    public var dpoNLLWeight: Double = 0
    /// Move the reference toward the policy every this many steps (0: a frozen reference).
    public var referenceEMAEvery: Int = 0
    /// The EMA's step toward the policy (TRL's `ref_model_mixup_alpha`).
    public var referenceEMAAlpha: Double = 0.6
    /// Leave special tokens (`<|eot_id|>`, headers) out of the DPO log-probabilities (Llama 3).
    public var maskFormattingTokens: Bool = false
    /// Count each rejected response only up to its first token that differs from the chosen one
    /// (``PreferenceEncoder/rejectedUpToDifference(chosen:rejected:)``); nil (false) keeps TRL's
    /// loss and the digests of recipes written before the key existed.
    public var rejectedUpToDifference: Bool?
    /// Build the DPO pairs from the policy's own samples ranked by the reward model.
    public var onPolicy: Bool = false
    /// On-policy pairs are kept only when the best and worst samples' rewards differ by more than this.
    public var pairRewardGap: Double = 0
    /// On-policy DPO: a prompt that gives no pair but has a correct answer adds that answer to the
    /// NLL term, as a pair of the answer with itself (``OnPolicyData/writePairs``); nil (false)
    /// keeps the digests of recipes written before the key existed.
    public var anchorUnpaired: Bool?

    // Sampling (rejection sampling and on-policy DPO).
    /// The reward model: a stage of this recipe (its output) or a folder relative to the data root.
    public var rewardModel: String?
    /// Candidates K sampled per prompt.
    public var samplesPerPrompt: Int = 4
    public var temperature: Double = 0.7
    public var topP: Double = 0.9
    public var topK: Int = 0
    /// The longest candidate, in tokens.
    public var maxNewTokens: Int = 32
    /// Prompts sampled together in one batch of `prompts_per_batch × samples_per_prompt` rows.
    public var promptsPerBatch: Int = 4
    /// Prompts read from the datasets (0: all).
    public var maxPrompts: Int = 0
    public var answerCheck: AnswerCheck = .exact
    /// The regular expression of `answer_check: regex`.
    public var answerPattern: String?
    /// Candidates kept per prompt (the best by reward).
    public var keepTop: Int = 1
    /// Kept candidates must score at least this (nil: no threshold).
    public var minReward: Double?

    public init() {}

    /// Checks values that no type can, naming the field.
    func validationProblems(kind: StageKind) -> [(field: String, reason: String)] {
        var problems: [(String, String)] = []
        if dpoBeta <= 0 { problems.append(("dpo_beta", "must be positive")) }
        if !(0...1).contains(referenceEMAAlpha) { problems.append(("reference_ema_alpha", "must be between 0 and 1")) }
        if referenceEMAEvery < 0 { problems.append(("reference_ema_every", "must not be negative")) }
        if samplesPerPrompt < 1 || (onPolicy && kind == .dpo && samplesPerPrompt < 2) {
            problems.append(("samples_per_prompt", kind == .dpo ? "on-policy DPO needs at least 2" : "must be at least 1"))
        }
        if temperature < 0 { problems.append(("temperature", "must not be negative")) }
        if !(topP > 0 && topP <= 1) { problems.append(("top_p", "must be in (0, 1]")) }
        if maxNewTokens < 1 { problems.append(("max_new_tokens", "must be at least 1")) }
        if promptsPerBatch < 1 { problems.append(("prompts_per_batch", "must be at least 1")) }
        if keepTop < 1 { problems.append(("keep_top", "must be at least 1")) }
        if answerCheck == .regex {
            if let answerPattern {
                if (try? NSRegularExpression(pattern: answerPattern.replacingOccurrences(of: "{answer}", with: "x"))) == nil {
                    problems.append(("answer_pattern", "'\(answerPattern)' is not a regular expression"))
                }
            } else {
                problems.append(("answer_pattern", "answer_check: regex needs an answer_pattern"))
            }
        }
        if anchorUnpaired == true && (kind != .dpo || !onPolicy || dpoNLLWeight <= 0) {
            problems.append(("anchor_unpaired", "anchors are learned by the NLL term of on-policy DPO: set on_policy: true and a positive dpo_nll_weight"))
        }
        if (kind == .rejection || (kind == .dpo && onPolicy)) && rewardModel == nil {
            problems.append(("reward_model", "\(kind == .rejection ? "rejection sampling" : "on-policy DPO") ranks candidates with a reward model: name a reward stage or folder"))
        }
        return problems
    }
}

extension RecipeParser {
    /// The recipe keys of ``PostTrainingSettings``.
    static let postTrainingSetters: [String: Setter] = [
        "reward_margin": post(\.rewardMargin),
        "center_rewards_coefficient": post(\.centerRewardsCoefficient),
        "dpo_beta": post(\.dpoBeta),
        "dpo_nll_weight": post(\.dpoNLLWeight),
        "reference_ema_every": post(\.referenceEMAEvery),
        "reference_ema_alpha": post(\.referenceEMAAlpha),
        "mask_formatting_tokens": post(\.maskFormattingTokens),
        "rejected_up_to_difference": post(\.rejectedUpToDifference),
        "anchor_unpaired": post(\.anchorUnpaired),
        "on_policy": post(\.onPolicy),
        "pair_reward_gap": post(\.pairRewardGap),
        "reward_model": { parser, settings, node, field in
            var post = settings.postTraining ?? PostTrainingSettings()
            post.rewardModel = try parser.string(node, field: field)
            settings.postTraining = post
        },
        "input_stage": { parser, settings, node, field in settings.inputStage = try parser.string(node, field: field) },
        "samples_per_prompt": post(\.samplesPerPrompt),
        "temperature": post(\.temperature),
        "top_p": post(\.topP),
        "top_k": post(\.topK),
        "max_new_tokens": post(\.maxNewTokens),
        "prompts_per_batch": post(\.promptsPerBatch),
        "max_prompts": post(\.maxPrompts),
        "answer_check": { parser, settings, node, field in
            let value: AnswerCheck = try parser.choice(node, field: field)
            var post = settings.postTraining ?? PostTrainingSettings()
            post.answerCheck = value
            settings.postTraining = post
        },
        "answer_pattern": { parser, settings, node, field in
            var post = settings.postTraining ?? PostTrainingSettings()
            post.answerPattern = try parser.string(node, field: field)
            settings.postTraining = post
        },
        "keep_top": post(\.keepTop),
        "min_reward": { parser, settings, node, field in
            guard let value = node.float, node.scalar != nil else { throw parser.error(node, field, "expected a number") }
            var post = settings.postTraining ?? PostTrainingSettings()
            post.minReward = value
            settings.postTraining = post
        },
    ]

    static func post(_ path: WritableKeyPath<PostTrainingSettings, Double>) -> Setter {
        { parser, settings, node, field in
            guard let value = node.float, node.scalar != nil else {
                throw parser.error(node, field, "expected a number, found '\(node.string ?? "\(node)")'")
            }
            var post = settings.postTraining ?? PostTrainingSettings()
            post[keyPath: path] = value
            settings.postTraining = post
        }
    }

    static func post(_ path: WritableKeyPath<PostTrainingSettings, Int>) -> Setter {
        { parser, settings, node, field in
            guard let value = node.int else { throw parser.error(node, field, "expected a whole number, found '\(node.string ?? "\(node)")'") }
            var post = settings.postTraining ?? PostTrainingSettings()
            post[keyPath: path] = value
            settings.postTraining = post
        }
    }

    /// A flag added after recipes were first written: true, or nil for false, so that the settings
    /// digests of older recipes (and their finished stages) stay valid.
    static func post(_ path: WritableKeyPath<PostTrainingSettings, Bool?>) -> Setter {
        { parser, settings, node, field in
            guard let value = node.bool else { throw parser.error(node, field, "expected true or false, found '\(node.string ?? "\(node)")'") }
            var post = settings.postTraining ?? PostTrainingSettings()
            post[keyPath: path] = value ? true : nil
            settings.postTraining = post
        }
    }

    static func post(_ path: WritableKeyPath<PostTrainingSettings, Bool>) -> Setter {
        { parser, settings, node, field in
            guard let value = node.bool else { throw parser.error(node, field, "expected true or false, found '\(node.string ?? "\(node)")'") }
            var post = settings.postTraining ?? PostTrainingSettings()
            post[keyPath: path] = value
            settings.postTraining = post
        }
    }
}
