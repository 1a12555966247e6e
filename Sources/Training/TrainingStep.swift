import Dispatch
import Layers
import Models
import TensorCore

/// What one optimiser step did.
public struct StepReport: Sendable, Equatable {
    /// The loss per learned token, over all micro-batches of the step.
    public var loss: Double
    /// The global gradient norm before clipping (non-finite when the step was skipped).
    public var gradientNorm: Double
    public var learningRate: Double
    /// Real (non-padding) input tokens.
    public var tokens: Int
    /// Positions the loss learned.
    public var learnedTokens: Int
    public var images: Int
    /// False when the loss or a gradient was not finite: the update was skipped.
    public var isFinite: Bool
    /// The samples of the step, to name them when something goes wrong.
    public var sampleIDs: [String]
    /// Wall time of the step's phases: forward passes (with the loss), backward passes, and
    /// clipping plus the optimiser update.
    public var forwardSeconds = 0.0, backwardSeconds = 0.0, optimizerSeconds = 0.0
    /// Wall time spent waiting for the slowest rank to finish its micro-batches, then summing
    /// gradients and the loss with the other ranks (both 0 in one process).
    public var rankWaitSeconds = 0.0, communicationSeconds = 0.0
}

/// One optimiser step of causal-language-model training over micro-batches: forward and backward
/// each micro-batch (gradients accumulate), normalise by the step's learned tokens, clip the global
/// gradient norm, update with AdamW at the given learning rate, clear the gradients. A non-finite
/// loss or gradient skips the update (gradients are dropped) and is reported, never applied.
///
/// The same code runs in `vlm train` and in `vlm bench train`.
public final class TrainingStepper {
    public let model: any TrainableLanguageModel
    public let optimizer: AdamW
    /// Global gradient-norm clipping; 0 or less turns it off.
    public var maxGradNorm: Double

    public init(model: any TrainableLanguageModel, optimizer: AdamW, maxGradNorm: Double) {
        self.model = model
        self.optimizer = optimizer
        self.maxGradNorm = maxGradNorm
    }

    /// Runs one step over `microBatches` (the accumulation group).
    public func step(_ microBatches: [TrainingBatch], learningRate: Double) -> StepReport {
        step(microBatches, learningRate: learningRate, runs: { _ in true }, combine: { _ in })
    }

    /// One step of which this process runs the micro-batches `runs` accepts (by index in the group);
    /// `combine` then makes the loss and gradients the whole group's (for data parallelism: the sums
    /// over all ranks), before clipping and the update.
    func step(_ microBatches: [TrainingBatch], learningRate: Double, runs: (Int) -> Bool,
              combine: (inout StepReport) throws -> Void) rethrows -> StepReport {
        ensure(!microBatches.isEmpty, "a training step needs at least one micro-batch")
        let learned = microBatches.map(\.lossTokenCount).reduce(0, +)
        var report = StepReport(loss: 0, gradientNorm: .nan, learningRate: learningRate, tokens: 0, learnedTokens: learned,
                                images: 0, isFinite: true, sampleIDs: microBatches.flatMap(\.sampleIDs))
        for batch in microBatches {
            report.tokens += batch.inputs.attentionMask.map { $0.integers().reduce(0, +) } ?? batch.inputs.inputIDs.elementCount
            // LLaVA's pixel values are (I, C, S, S), Mllama's (B, N, G, C, t, t).
            report.images += batch.inputs.pixelValues.map { $0.rank == 4 ? $0.shape[0] : $0.shape[0] * $0.shape[1] } ?? 0
        }
        guard learned > 0 else {
            report.isFinite = false
            return report
        }
        for (index, batch) in microBatches.enumerated() where runs(index) {
            var start = DispatchTime.now().uptimeNanoseconds
            if let seed = batch.dropoutSeed { model.restartLowRankDropout(seed: seed) }
            let loss = causalLanguageModelLoss(model: model, inputs: batch.inputs, labels: batch.labels, normalizer: learned)
            let value = loss.item()
            report.forwardSeconds += Self.seconds(since: &start)
            report.loss += value
            if !value.isFinite { report.isFinite = false; break }
            loss.backward()
            report.backwardSeconds += Self.seconds(since: &start)
        }
        try combine(&report)
        var start = DispatchTime.now().uptimeNanoseconds
        applyClippedUpdate(&report, optimizer: optimizer, maxGradNorm: maxGradNorm, learningRate: learningRate)
        report.optimizerSeconds = Self.seconds(since: &start)
        return report
    }

    /// Seconds since `start`, which is moved to now.
    static func seconds(since start: inout UInt64) -> Double {
        let now = DispatchTime.now().uptimeNanoseconds
        defer { start = now }
        return Double(now - start) / 1e9
    }
}

/// The end of every optimiser step: clip the global gradient norm (`maxGradNorm` 0: no clipping,
/// the norm is still measured), apply AdamW at `learningRate` when the loss and the norm are
/// finite, and clear the gradients either way.
func applyClippedUpdate(_ report: inout StepReport, optimizer: AdamW, maxGradNorm: Double, learningRate: Double) {
    if report.isFinite {
        report.gradientNorm = clipGradientNorm(optimizer.parameters, maxNorm: maxGradNorm > 0 ? maxGradNorm : .infinity)
        report.isFinite = report.gradientNorm.isFinite
    }
    if report.isFinite {
        optimizer.learningRate = learningRate
        optimizer.step()
    }
    optimizer.zeroGradients()
}
