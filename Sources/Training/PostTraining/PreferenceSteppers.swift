import Dispatch
import Foundation
import Layers
import Models
import TensorCore

// Shapes: R rows of a preference micro-batch (chosen, rejected, [edited]), P pairs, T tokens, V vocabulary.

/// The optimiser half of a step shared by the steppers with a loss of their own (the reward
/// model's, DPO's, the encoder stage's patch labels): forward and backward each
/// micro-batch `runs` accepts with `loss` (LoRA dropout in `model` restarted from the micro-batch's
/// `dropoutSeed`; gradients accumulate; `loss` gets the micro-batch's
/// index in the step), let `combine` make the loss and gradients the whole group's (data
/// parallelism: sums over the ranks), clip the global norm, AdamW, clear the gradients. A
/// non-finite loss or gradient skips the update, as ``TrainingStepper`` does.
func customLossStep(_ microBatches: [TrainingBatch], model: Module, learningRate: Double, optimizer: AdamW, maxGradNorm: Double,
                    runs: (Int) -> Bool = { _ in true }, combine: (inout StepReport) throws -> Void = { _ in },
                    loss: (Int, TrainingBatch) -> Tensor) rethrows -> StepReport {
    ensure(!microBatches.isEmpty, "a training step needs at least one micro-batch")
    var report = StepReport(loss: 0, gradientNorm: .nan, learningRate: learningRate,
                            tokens: 0, learnedTokens: microBatches.map(\.lossTokenCount).reduce(0, +),
                            images: 0, isFinite: true, sampleIDs: microBatches.flatMap(\.sampleIDs))
    for batch in microBatches {
        report.tokens += batch.inputs.attentionMask.map { $0.integers().reduce(0, +) } ?? batch.inputs.inputIDs.elementCount
        report.images += batch.inputs.pixelValues.map { $0.shape[0] * $0.shape[1] } ?? 0
    }
    var clock = DispatchTime.now().uptimeNanoseconds
    for (index, batch) in microBatches.enumerated() where runs(index) {
        if let seed = batch.dropoutSeed { model.restartLowRankDropout(seed: seed) }
        let value = loss(index, batch)
        let number = value.item()
        report.forwardSeconds += TrainingStepper.seconds(since: &clock)
        report.loss += number
        if !number.isFinite { report.isFinite = false; break }
        value.backward()
        report.backwardSeconds += TrainingStepper.seconds(since: &clock)
    }
    try combine(&report)
    clock = DispatchTime.now().uptimeNanoseconds
    applyClippedUpdate(&report, optimizer: optimizer, maxGradNorm: maxGradNorm, learningRate: learningRate)
    report.optimizerSeconds = TrainingStepper.seconds(since: &clock)
    return report
}

/// Per-micro-batch figures of a step merged in micro-batch order; over ranks, every rank's share
/// gathered first, so that the figures are those of one process.
func mergedStatistics<Statistics: MergeableStatistics & Codable>(_ byMicroBatch: [Int: Statistics], empty: Statistics,
                                                                 across parallelism: DataParallelism?) throws -> Statistics {
    let all = try parallelism.map { try $0.group.gatherInIndexOrder(byMicroBatch) } ?? byMicroBatch.sorted { $0.key < $1.key }.map(\.value)
    return all.reduce(into: empty) { $0.append($1) }
}

/// The ranked pairs of a preference batch's rows: (chosen, rejected), and with Llama 3's edited
/// responses (ranked edited > chosen > rejected) also (edited, chosen) and (edited, rejected).
func rankedPairs(_ layout: PreferenceLayout) -> [(better: Range<Int>, worse: Range<Int>)] {
    var pairs = [(layout.chosenRows, layout.rejectedRows)]
    if let edited = layout.editedRows { pairs += [(edited, layout.chosenRows), (edited, layout.rejectedRows)] }
    return pairs
}

/// The reward model's step: the Bradley–Terry loss over every ranked pair of the step's records
/// (``rewardPairLoss(chosen:rejected:margins:centerCoefficient:normalizer:)``), normalised by the
/// ranked pairs of the whole step.
final class RewardStepper: OneStepForEveryRankCount {
    let model: VisionRewardModel
    let optimizer: AdamW
    let maxGradNorm: Double
    let margin: Double
    let centerCoefficient: Double
    private(set) var lastStepMetrics: [String: Double] = [:]

    init(model: VisionRewardModel, optimizer: AdamW, maxGradNorm: Double, margin: Double, centerCoefficient: Double) {
        self.model = model
        self.optimizer = optimizer
        self.maxGradNorm = maxGradNorm
        self.margin = margin
        self.centerCoefficient = centerCoefficient
    }

    /// This rank's share of the step (all of it alone); the normaliser counts the whole step's pairs.
    func step(_ microBatches: [TrainingBatch], learningRate: Double, parallelism: DataParallelism?) throws -> StepReport {
        let normalizer = microBatches.reduce(0) { total, batch in
            let layout = PreferenceLayout(batch: batch)
            return total + rankedPairs(layout).count * layout.pairs
        }
        var statistics: [Int: RewardPairStatistics] = [:]
        let report = try customLossStep(microBatches, model: model, learningRate: learningRate, optimizer: optimizer, maxGradNorm: maxGradNorm,
                                        runs: { parallelism?.runs(microBatch: $0) ?? true },
                                        combine: { try parallelism?.combine(&$0, parameters: optimizer.parameters) }) { index, batch in
            let rewards = model.rewards(batch.inputs)                                     // (R)
            var loss: Tensor? = nil
            for (pairIndex, pair) in rankedPairs(PreferenceLayout(batch: batch)).enumerated() {
                let better = rewards.slice(axis: 0, pair.better), worse = rewards.slice(axis: 0, pair.worse)
                let term = rewardPairLoss(chosen: better, rejected: worse,
                                          margins: margin == 0 ? nil : Array(repeating: margin, count: better.shape[0]),
                                          centerCoefficient: centerCoefficient, normalizer: normalizer)
                loss = loss.map { $0 + term } ?? term
                if pairIndex == 0 { statistics[index] = RewardPairStatistics(chosen: better.doubles(), rejected: worse.doubles()) }
            }
            return loss!
        }
        lastStepMetrics = try mergedStatistics(statistics, empty: RewardPairStatistics(), across: parallelism).metrics
        return report
    }
}

/// Per-position log-probabilities of the labels `(B, T−1)`: position t predicts `labels[t + 1]`;
/// 0 where the label is −100 (nothing learned there).
///
/// Only the learned positions go through the LM head (as TRL's DPO trainer projects only the
/// completion): their hidden states are gathered into one `(N, D)` block, projected and scored, and
/// the `N` log-probabilities are spread back over `(B, T−1)` with zeros elsewhere. In a preference
/// batch half the positions are the prompt, so this halves the head's products and the
/// vocabulary-wide softmax of both the policy and the reference.
/// With `prefix` the model continues from those states (``TrainableLanguageModel/hiddenStates(_:after:)``).
func labelLogProbabilities(model: some TrainableLanguageModel, inputs: ModelInputs, labels: Tensor,
                           after prefix: FrozenPrefixStates? = nil) -> Tensor {
    let (b, t) = (inputs.batchSize, inputs.length)
    let ignored = SampleEncoder.ignoreIndex
    let next = labels.slice(axis: 1, 1..<t).contiguous().integers()                       // B·(T−1) targets
    var learnedRows: [Int] = [], learnedTargets: [Int] = []
    var slotOfPosition = [Int](repeating: -1, count: b * (t - 1))
    for row in 0..<b {
        for column in 0..<(t - 1) where next[row * (t - 1) + column] != ignored {
            slotOfPosition[row * (t - 1) + column] = learnedRows.count
            learnedRows.append(row * t + column)
            learnedTargets.append(next[row * (t - 1) + column])
        }
    }
    let hidden = prefix.map { model.hiddenStates(inputs, after: $0) } ?? model.hiddenStates(inputs)   // (B, T, D)
    guard !learnedRows.isEmpty else {   // nothing learned: zeros, still on the graph
        return hidden.slice(axis: 1, 0..<(t - 1)).sum(axes: [2]) * 0
    }
    let n = learnedRows.count
    let picked = embedding(Tensor(indices: learnedRows, shape: [n]),
                           table: hidden.reshaped([b * t, hidden.shape[2]]))              // (N, D)
    let scores = logProbabilities(logits: model.logits(hiddenStates: picked),
                                  targets: Tensor(indices: learnedTargets, shape: [n]))   // (N)
    // Row N of the padded column is the 0 of every unlearned position.
    let padded = Tensor.concatenate([scores.reshaped([n, 1]), Tensor(zeros: [1, 1], dtype: scores.dtype)], axis: 0)
    let spread = embedding(Tensor(indices: slotOfPosition.map { $0 < 0 ? n : $0 }, shape: [b * (t - 1)]), table: padded)
    return spread.reshaped([b, t - 1])                                                    // (B, T−1)
}

/// The EMA of a reference weight toward the policy's, as TRL's `SyncRefModelCallback` moves it:
/// `reference ← (1 − α) · reference + α · policy`.
public func exponentialMovingAverage(reference: Tensor, policy: Tensor, alpha: Double) -> Tensor {
    withNoGrad { reference * (1 - alpha) + policy * alpha }
}

/// The `dpo` stage's step on `policy` and a frozen `reference` with the reference never moved
/// (no EMA), for callers outside the stage loop: `vlm bench dpo` times it. Sigmoid loss with `beta`
/// (plus the NLL term when `nllWeight` ≠ 0), the reference's log-probabilities without a graph
/// once per micro-batch, global-norm clipping at `maxGradNorm` (0: none), then `optimizer`.
/// Batches lay out their rows as ``PreferenceLayout`` says (sample ids ending `#chosen`, `#rejected`).
public func makeDPOStepper(policy: any TrainableLanguageModel, reference: any TrainableLanguageModel, optimizer: AdamW,
                           maxGradNorm: Double, beta: Double = 0.1, nllWeight: Double = 0) -> any StageStepping {
    DPOStepper(policy: policy, reference: reference, optimizer: optimizer, maxGradNorm: maxGradNorm, beta: beta,
               nllWeight: nllWeight, emaEvery: 0, emaAlpha: 0)
}

/// The DPO step: the policy is the stage's model; the reference is a frozen copy of the stage's
/// input whose log-probabilities are computed without a graph, once per micro-batch. With
/// `emaEvery` k > 0, every k steps the reference's copies of the trainable weights move toward the
/// policy's (``exponentialMovingAverage(reference:policy:alpha:)``; Llama 3's option, TRL's
/// `sync_ref_model`); those copies are part of the run checkpoint.
final class DPOStepper: OneStepForEveryRankCount {
    let policy: any TrainableLanguageModel
    let reference: any TrainableLanguageModel
    let optimizer: AdamW
    let maxGradNorm: Double
    let beta: Double
    let nllWeight: Double
    let emaEvery: Int
    let emaAlpha: Double
    /// The two models' frozen prefixes have the same bits (the stage loads both from its input).
    let sharesFrozenPrefix: Bool
    private(set) var lastStepMetrics: [String: Double] = [:]

    init(policy: any TrainableLanguageModel, reference: any TrainableLanguageModel, optimizer: AdamW, maxGradNorm: Double,
         beta: Double, nllWeight: Double, emaEvery: Int, emaAlpha: Double) {
        self.policy = policy
        self.reference = reference
        sharesFrozenPrefix = policy.sharesFrozenPrefix(with: reference)
        self.optimizer = optimizer
        self.maxGradNorm = maxGradNorm
        self.beta = beta
        self.nllWeight = nllWeight
        self.emaEvery = emaEvery
        self.emaAlpha = emaAlpha
    }

    /// This rank's share of the step (all of it alone): the reference's log-probabilities of its
    /// own micro-batches only; the normalisers count the whole step's pairs and chosen tokens.
    func step(_ microBatches: [TrainingBatch], learningRate: Double, parallelism: DataParallelism?) throws -> StepReport {
        let flags = microBatches.map { PreferenceLayout(batch: $0).preferencePairs(in: $0) }
        let pairs = max(1, flags.reduce(0) { $0 + $1.filter { $0 }.count })
        let chosenTokens = microBatches.reduce(0) { $0 + Self.chosenTokenCount($1) }
        var statistics: [Int: PreferenceStatistics] = [:]
        let report = try customLossStep(microBatches, model: policy, learningRate: learningRate, optimizer: optimizer, maxGradNorm: maxGradNorm,
                                        runs: { parallelism?.runs(microBatch: $0) ?? true },
                                        combine: { try parallelism?.combine(&$0, parameters: optimizer.parameters) }) { index, batch in
            // The layers before the first image read are frozen in both models: run them once.
            let prefix = sharesFrozenPrefix ? withNoGrad { policy.frozenPrefixStates(batch.inputs) } : nil
            let referenceSums = withNoGrad {
                labelLogProbabilities(model: reference, inputs: batch.inputs, labels: batch.labels, after: prefix).sum(axes: [1]).doubles()
            }
            let tokens = labelLogProbabilities(model: policy, inputs: batch.inputs, labels: batch.labels, after: prefix)   // (2P, T−1)
            let (loss, figures) = directPreferenceLoss(tokenLogProbabilities: tokens, referenceSums: referenceSums, beta: beta,
                                                       nllWeight: nllWeight, pairNormalizer: pairs,
                                                       chosenTokenNormalizer: max(1, chosenTokens), preferencePairs: flags[index])
            statistics[index] = figures
            return loss
        }
        lastStepMetrics = try mergedStatistics(statistics, empty: PreferenceStatistics(beta: beta), across: parallelism).metrics
        return report
    }

    /// Learned positions (after the shift) of the chosen rows.
    static func chosenTokenCount(_ batch: TrainingBatch) -> Int {
        let layout = PreferenceLayout(batch: batch)
        let t = batch.labels.shape[1], labels = batch.labels.integers()
        var count = 0
        for row in layout.chosenRows { for column in 1..<t where labels[row * t + column] != SampleEncoder.ignoreIndex { count += 1 } }
        return count
    }

    func didFinishStep(_ step: Int) {
        guard emaEvery > 0, step % emaEvery == 0 else { return }
        let current = Dictionary(uniqueKeysWithValues: reference.parameters())
        var moved: [String: Tensor] = [:]
        for (name, slot) in optimizer.parameters.map({ ($0.name, $0.tensor) }) {
            guard let old = current[name] else { continue }
            moved[name] = exponentialMovingAverage(reference: old.converted(to: .float32), policy: slot.detached(), alpha: emaAlpha)
        }
        try? reference.updateParameters(moved, source: "the EMA reference")
    }

    func checkpointTensors() -> [String: Tensor] {
        guard emaEvery > 0 else { return [:] }
        let names = Set(optimizer.parameters.map(\.name))
        return Dictionary(uniqueKeysWithValues: reference.parameters().filter { names.contains($0.name) }
            .map { ($0.name, $0.tensor.converted(to: .float32).detached()) })
    }

    func restore(checkpointTensors: [String: Tensor]) throws {
        guard emaEvery > 0, !checkpointTensors.isEmpty else { return }
        try reference.updateParameters(checkpointTensors, source: "the EMA reference in the run checkpoint")
    }
}
