import Foundation
import TensorCore

// The losses of post-training, with the figures TRL reports beside them. Shapes: P pairs,
// R = 2P rows (chosen rows first, then rejected), L predicted positions per row.

/// `−log σ(x)` element-wise, computed as `max(−x, 0) + log(1 + e^{−|x|})` so that it neither
/// overflows nor loses precision for large |x|.
///
/// Saves the input. Backward: `d/dx −log σ(x) = −σ(−x)`.
public func negativeLogSigmoid(_ x: Tensor) -> Tensor {
    let values = x.doubles()
    let out = Tensor(values.map { max(-$0, 0) + Foundation.log1p(Foundation.exp(-abs($0))) }, shape: x.shape)
        .converted(to: x.dtype)
    guard Autograd.needsGraph(x) else { return out }
    out.recordOperation("negativeLogSigmoid", inputs: [x]) { gradient in
        let incoming = gradient.doubles()
        let local = values.map { -1 / (1 + Foundation.exp($0)) }                    // −σ(−x)
        return [Tensor(zip(incoming, local).map { $0 * $1 }, shape: gradient.shape).converted(to: gradient.dtype)]
    }
    return out
}

// MARK: - Reward model (Bradley–Terry)

/// The reward model's pairwise loss, as TRL's `RewardTrainer` computes it:
///
///     loss = Σₚ −log σ(r_c − r_r − mₚ) / n  +  c · Σₚ (r_c + r_r)² / n
///
/// with margins `m` (0 when nil), the centring coefficient `c` (Llama 3's regulariser on the
/// square of the mean reward, TRL's `center_rewards_coefficient`; 0 turns it off) and `n` the
/// pairs of the whole optimiser step (so accumulated micro-batches equal one larger batch; with
/// one micro-batch `n = P` and this is TRL's mean).
///
/// - Parameters:
///   - chosen: (P) rewards of the preferred responses.
///   - rejected: (P) rewards of the other responses.
public func rewardPairLoss(chosen: Tensor, rejected: Tensor, margins: [Double]? = nil, centerCoefficient: Double = 0,
                           normalizer: Int) -> Tensor {
    ensure(chosen.shape == rejected.shape && chosen.rank == 1, "rewards must be (P) and (P), got \(chosen.shape) and \(rejected.shape)")
    ensure(normalizer > 0, "the loss normalizer must be positive, got \(normalizer)")
    var difference = chosen - rejected                                              // (P)
    if let margins {
        ensure(margins.count == chosen.shape[0], "\(margins.count) margins for \(chosen.shape[0]) pairs")
        difference = difference - Tensor(margins, shape: [margins.count]).converted(to: chosen.dtype)
    }
    var loss = negativeLogSigmoid(difference).sum() * (1 / Double(normalizer))
    if centerCoefficient != 0 {
        loss = loss + (chosen + rejected).squared().sum() * (centerCoefficient / Double(normalizer))
    }
    return loss
}

/// What a reward model's pairs say, as TRL's `RewardTrainer` logs it.
public struct RewardPairStatistics: Sendable, Equatable, Codable {
    public var chosen: [Double] = []
    public var rejected: [Double] = []

    public init(chosen: [Double] = [], rejected: [Double] = []) {
        self.chosen = chosen
        self.rejected = rejected
    }

    public mutating func append(_ other: RewardPairStatistics) {
        chosen += other.chosen
        rejected += other.rejected
    }

    /// The share of pairs whose chosen response scores strictly higher.
    public var accuracy: Double { mean(zip(chosen, rejected).map { $0 > $1 ? 1 : 0 }) }
    /// The mean of `r_c − r_r`.
    public var margin: Double { mean(zip(chosen, rejected).map { $0 - $1 }) }
    public var meanReward: Double { mean(chosen + rejected) }
    public var minReward: Double { (chosen + rejected).min() ?? .nan }
    public var maxReward: Double { (chosen + rejected).max() ?? .nan }

    /// `accuracy`, `margin`, `mean_reward`, `min_reward`, `max_reward` (TRL's names).
    public var metrics: [String: Double] {
        ["accuracy": accuracy, "margin": margin, "mean_reward": meanReward, "min_reward": minReward, "max_reward": maxReward]
    }
}

// MARK: - DPO

/// Per-row sums of learned-position log-probabilities, `(R)`, from per-position log-probabilities
/// `(R, L)` that are 0 where nothing is learned.
public func sequenceLogProbabilities(_ tokenLogProbabilities: Tensor) -> Tensor {
    tokenLogProbabilities.sum(axes: [1])                                            // (R)
}

/// The sigmoid DPO loss (Rafailov et al.), as TRL's `DPOTrainer` computes it with
/// `loss_type="sigmoid"`, plus its optional NLL term on the chosen responses (TRL's `"sft"` loss
/// with weight `nllWeight`; Llama 3 used 0.2):
///
///     zₚ   = β · ((π_c − ρ_c) − (π_r − ρ_r))
///     loss = Σₚ −log σ(zₚ) / n_pairs  +  w · Σ_{chosen tokens} −log π(token) / n_tokens
///
/// where π and ρ are the policy's and the reference's log-probabilities summed over the response
/// tokens. `n_pairs` and `n_tokens` count the pairs and the chosen response tokens of the whole
/// optimiser step (with one micro-batch: TRL's means).
///
/// A pair whose two responses are the same (`preferencePairs[p]` false) carries no preference: it
/// is left out of the first sum, of `n_pairs` and of the figures, and counts in the NLL term only.
/// (TRL adds its constant −log σ(0) to the mean; the gradient is the same up to that mean's
/// normaliser.)
///
/// - Parameters:
///   - tokenLogProbabilities: (2P, L) the policy's log-probability of each learned position, 0
///     elsewhere; rows `0..<P` chosen, `P..<2P` rejected.
///   - referenceSums: (2P) the reference model's summed log-probabilities, same row order.
///   - preferencePairs: (P) whether each pair's responses differ (nil: all do).
/// - Returns: the loss and the step's figures (TRL's `rewards/*` and `logps/*`).
public func directPreferenceLoss(tokenLogProbabilities: Tensor, referenceSums: [Double], beta: Double, nllWeight: Double = 0,
                                 pairNormalizer: Int, chosenTokenNormalizer: Int,
                                 preferencePairs: [Bool]? = nil) -> (loss: Tensor, statistics: PreferenceStatistics) {
    let rows = tokenLogProbabilities.shape[0], pairs = rows / 2
    ensure(tokenLogProbabilities.rank == 2 && rows == 2 * pairs && pairs > 0, "log-probabilities must be (2P, L), got \(tokenLogProbabilities.shape)")
    ensure(referenceSums.count == rows, "\(referenceSums.count) reference sums for \(rows) rows")
    ensure(pairNormalizer > 0, "the pair normalizer must be positive, got \(pairNormalizer)")
    let sums = sequenceLogProbabilities(tokenLogProbabilities)                      // (2P)
    let policyChosen = sums.slice(axis: 0, 0..<pairs), policyRejected = sums.slice(axis: 0, pairs..<rows)
    let reference = Tensor(referenceSums, shape: [rows]).converted(to: sums.dtype)
    let logits = (policyChosen - reference.slice(axis: 0, 0..<pairs)) - (policyRejected - reference.slice(axis: 0, pairs..<rows))
    var perPair = negativeLogSigmoid(logits * beta)                                  // (P)
    if let preferencePairs {
        ensure(preferencePairs.count == pairs, "\(preferencePairs.count) pair flags for \(pairs) pairs")
        if preferencePairs.contains(false) {
            perPair = perPair * Tensor(preferencePairs.map { $0 ? 1.0 : 0.0 }, shape: [pairs]).converted(to: perPair.dtype)
        }
    }
    var loss = perPair.sum() * (1 / Double(pairNormalizer))
    if nllWeight != 0 {
        ensure(chosenTokenNormalizer > 0, "the NLL term needs chosen response tokens")
        loss = loss - policyChosen.sum() * (nllWeight / Double(chosenTokenNormalizer))
    }
    let values = sums.doubles()
    var statistics = PreferenceStatistics(beta: beta)
    for pair in 0..<pairs where preferencePairs?[pair] ?? true {
        statistics.add(policyChosen: values[pair], policyRejected: values[pairs + pair],
                       referenceChosen: referenceSums[pair], referenceRejected: referenceSums[pairs + pair])
    }
    return (loss, statistics)
}

/// The figures of DPO pairs, as TRL's `DPOTrainer` logs them (`rewards/chosen`, `rewards/rejected`,
/// `rewards/accuracies`, `rewards/margins`, `logps/chosen`, `logps/rejected`), where a response's
/// implicit reward is `β · (π − ρ)`; plus the mean log-ratio to the reference over both responses
/// (`log_ratio`), the drift from the reference on the preference data, and how often the policy and
/// the reference themselves give the chosen response the higher log-probability
/// (`logps/accuracies`, `reference/logps/accuracies`): the implicit-reward accuracy starts at 0
/// whatever the input, these say whether the model ranks the pairs better than its input did.
public struct PreferenceStatistics: Sendable, Equatable, Codable {
    public var beta: Double
    public var policyChosen: [Double] = []
    public var policyRejected: [Double] = []
    public var referenceChosen: [Double] = []
    public var referenceRejected: [Double] = []

    public init(beta: Double) { self.beta = beta }

    public mutating func add(policyChosen: Double, policyRejected: Double, referenceChosen: Double, referenceRejected: Double) {
        self.policyChosen.append(policyChosen)
        self.policyRejected.append(policyRejected)
        self.referenceChosen.append(referenceChosen)
        self.referenceRejected.append(referenceRejected)
    }

    public mutating func append(_ other: PreferenceStatistics) {
        policyChosen += other.policyChosen
        policyRejected += other.policyRejected
        referenceChosen += other.referenceChosen
        referenceRejected += other.referenceRejected
    }

    public var chosenRewards: [Double] { zip(policyChosen, referenceChosen).map { beta * ($0 - $1) } }
    public var rejectedRewards: [Double] { zip(policyRejected, referenceRejected).map { beta * ($0 - $1) } }

    public var metrics: [String: Double] {
        let chosen = chosenRewards, rejected = rejectedRewards
        return [
            "rewards/chosen": mean(chosen), "rewards/rejected": mean(rejected),
            "rewards/accuracies": mean(zip(chosen, rejected).map { $0 > $1 ? 1 : 0 }),
            "rewards/margins": mean(zip(chosen, rejected).map { $0 - $1 }),
            "logps/chosen": mean(policyChosen), "logps/rejected": mean(policyRejected),
            "logps/accuracies": mean(zip(policyChosen, policyRejected).map { $0 > $1 ? 1 : 0 }),
            "reference/logps/accuracies": mean(zip(referenceChosen, referenceRejected).map { $0 > $1 ? 1 : 0 }),
            "log_ratio": mean(zip(policyChosen + policyRejected, referenceChosen + referenceRejected).map { $0 - $1 }),
        ]
    }
}

func mean(_ values: [Double]) -> Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }
