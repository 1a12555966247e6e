import Foundation
import TensorCore

/// One optimiser step of a stage over its micro-batches, whatever the loss: causal-LM
/// cross-entropy (``TrainingStepper``), the reward model's pairwise loss, or DPO. The stage loop
/// (``StageRunner``) drives any of them the same way.
public protocol StageStepping: AnyObject {
    /// Runs one step over `microBatches` (the accumulation group) at `learningRate`.
    func step(_ microBatches: [TrainingBatch], learningRate: Double) -> StepReport
    /// Runs one data-parallel step: every rank passes the same `microBatches`, runs its share of
    /// them (``DataParallelism/runs(microBatch:)``), and the loss and gradients are summed over the
    /// ranks before every rank applies the same update.
    /// - Throws: ``CollectiveError`` when another rank stopped or the network failed.
    func step(_ microBatches: [TrainingBatch], learningRate: Double, across parallelism: DataParallelism) throws -> StepReport
    /// Figures of the last step beyond the loss (written to `metrics.jsonl`, e.g. `rewards/margins`).
    var lastStepMetrics: [String: Double] { get }
    /// State besides the trainable weights and the optimiser that a run checkpoint must keep for
    /// an exact resume (an EMA reference model's weights), by name.
    func checkpointTensors() -> [String: Tensor]
    /// Restores what ``checkpointTensors()`` returned.
    func restore(checkpointTensors: [String: Tensor]) throws
    /// Called after every optimiser step with the number of steps done (an EMA update every k steps).
    func didFinishStep(_ step: Int)
}

extension StageStepping {
    public var lastStepMetrics: [String: Double] { [:] }
    public func checkpointTensors() -> [String: Tensor] { [:] }
    public func restore(checkpointTensors: [String: Tensor]) throws {}
    public func didFinishStep(_ step: Int) {}
}

extension TrainingStepper: StageStepping {}

/// A stepper whose single-process and data-parallel steps are one function: `parallelism` is nil
/// alone, and the two ``StageStepping`` entry points forward to it.
protocol OneStepForEveryRankCount: StageStepping {
    /// This rank's share of the step (all of it alone).
    func step(_ microBatches: [TrainingBatch], learningRate: Double, parallelism: DataParallelism?) throws -> StepReport
}

extension OneStepForEveryRankCount {
    public func step(_ microBatches: [TrainingBatch], learningRate: Double) -> StepReport {
        try! step(microBatches, learningRate: learningRate, parallelism: nil)   // alone, nothing throws
    }

    public func step(_ microBatches: [TrainingBatch], learningRate: Double, across parallelism: DataParallelism) throws -> StepReport {
        try step(microBatches, learningRate: learningRate, parallelism: parallelism)
    }
}
