import Layers
import TensorCore

// Shapes: B images, P patches of a tile, F label fields, C a field's classes.

/// The `encoder` stage's step: the sum over fields of the mean cross-entropy over every patch of
/// the images' tiles (background patches learn class 0; the canvas's padding and unused tile
/// slots are left out), averaged over the step's micro-batches.
final class PatchLabelStepper: OneStepForEveryRankCount {
    let model: PatchLabelModel
    let optimizer: AdamW
    let maxGradNorm: Double
    let fieldCount: Int

    init(model: PatchLabelModel, optimizer: AdamW, maxGradNorm: Double, fieldCount: Int) {
        self.model = model
        self.optimizer = optimizer
        self.maxGradNorm = maxGradNorm
        self.fieldCount = fieldCount
    }

    func step(_ microBatches: [TrainingBatch], learningRate: Double, parallelism: DataParallelism?) throws -> StepReport {
        let share = 1.0 / Double(microBatches.count)
        return try customLossStep(microBatches, model: model, learningRate: learningRate, optimizer: optimizer, maxGradNorm: maxGradNorm,
                                  runs: { parallelism?.runs(microBatch: $0) ?? true },
                                  combine: { try parallelism?.combine(&$0, parameters: self.optimizer.parameters) }) { _, batch in
            patchLabelLoss(model: model, batch: batch, fieldCount: fieldCount) * share
        }
    }
}

/// The sum over fields of the mean patch cross-entropy; `batch.labels` is `(B, P, F)` classes.
func patchLabelLoss(model: PatchLabelModel, batch: TrainingBatch, fieldCount: Int) -> Tensor {
    let logits = model.patchLogits(batch.inputs)
    let targets = batch.labels.reshaped([-1, fieldCount])                                  // (B·P, F)
    var loss: Tensor? = nil
    for (field, scores) in logits.enumerated() {
        let term = crossEntropy(logits: scores, targets: targets.slice(axis: 1, field..<(field + 1)).contiguous().reshaped([-1]))
        loss = loss.map { $0 + term } ?? term
    }
    return loss!
}
