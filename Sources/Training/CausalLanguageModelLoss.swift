import Models
import TensorCore

// Shapes: B batch, T tokens, D width, V vocabulary.

/// Next-token cross-entropy over the learned positions, summed and divided by `normalizer`.
///
/// `labels` (B, T) are aligned with the input ids and unshifted, −100 where nothing is learned
/// (transformers' convention): position t's logits predict `labels[t + 1]`. Dividing the sum by
/// the number of learned tokens over *all* micro-batches of an optimiser step (not each
/// micro-batch's own count) makes k accumulated micro-batches equal one batch k times larger.
///
/// Only the learned positions go through the output head: in SFT most positions are the prompt's,
/// and with Llama 3's 128k vocabulary their logits would be most of a step's time and memory. The
/// loss and every gradient are those of projecting all positions and ignoring the −100 ones.
public func causalLanguageModelLoss(model: some TrainableLanguageModel, inputs: ModelInputs, labels: Tensor,
                                    normalizer: Int) -> Tensor {
    ensure(labels.shape == inputs.inputIDs.shape, "labels \(labels.shape) must match input_ids \(inputs.inputIDs.shape)")
    ensure(normalizer > 0, "the loss normalizer must be positive, got \(normalizer)")
    let (b, t) = (inputs.batchSize, inputs.length)
    let hidden = model.hiddenStates(inputs)                                          // (B, T, D)
    let width = hidden.shape[2]
    let predicting = hidden.slice(axis: 1, 0..<(t - 1)).contiguous()                 // (B, T−1, D)
    let targets = labels.slice(axis: 1, 1..<t).contiguous().reshaped([b * (t - 1)])  // (B·(T−1))
    let targetValues = targets.integers()
    let learned = targetValues.indices.filter { targetValues[$0] != -100 }
    guard !learned.isEmpty, learned.count < targetValues.count else {
        // Nothing or everything learned: all positions, as they are (a zero loss keeps its graph).
        let logits = model.logits(hiddenStates: predicting)                          // (B, T−1, V)
        let summed = crossEntropy(logits: logits.reshaped([b * (t - 1), logits.shape[2]]), targets: targets, reduction: .sum)
        return summed * (1 / Double(normalizer))
    }
    // The learned rows, gathered with a differentiable row lookup (its backward scatters the rows back).
    let rows = embedding(Tensor(indices: learned, shape: [learned.count]), table: predicting.reshaped([b * (t - 1), width]))
    let logits = model.logits(hiddenStates: rows.reshaped([1, learned.count, width]))   // (1, N, V)
    let summed = crossEntropy(logits: logits.reshaped([learned.count, logits.shape[2]]),
                              targets: Tensor(indices: learned.map { targetValues[$0] }, shape: [learned.count], dtype: targets.dtype),
                              reduction: .sum)
    return summed * (1 / Double(normalizer))
}

/// The number of positions a batch's loss learns: labels after the one-token shift that are not −100.
public func learnedTokenCount(labels: Tensor) -> Int {
    let (b, t) = (labels.shape[0], labels.shape[1])
    let values = labels.integers()
    var count = 0
    for row in 0..<b { for column in 1..<t where values[row * t + column] != -100 { count += 1 } }
    return count
}
