import Models
import Testing
import TensorCore
@testable import Training

@Suite("The causal language-model loss")
struct CausalLanguageModelLossTests {
    /// What the loss was before only learned positions went through the output head: every
    /// position projected, the −100 ones ignored by the cross-entropy.
    static func allPositionsLoss(model: MllamaForConditionalGeneration, batch: TrainingBatch) -> Tensor {
        let (b, t) = (batch.inputs.batchSize, batch.inputs.length)
        let hidden = model.hiddenStates(batch.inputs).slice(axis: 1, 0..<(t - 1)).contiguous()
        let logits = model.logits(hiddenStates: hidden)
        let targets = batch.labels.slice(axis: 1, 1..<t).contiguous().reshaped([b * (t - 1)])
        return crossEntropy(logits: logits.reshaped([b * (t - 1), logits.shape[2]]), targets: targets, reduction: .sum)
            * (1 / Double(batch.lossTokenCount))
    }

    static func lossAndGradients(_ loss: (MllamaForConditionalGeneration, TrainingBatch) -> Tensor) -> (Double, [String: [Float]]) {
        let model = tinyTrainingModel()
        for (_, tensor) in model.parameters() { tensor.requiresGrad = true }
        // Padded rows of different lengths and an unlearned first position: a third of the positions are −100.
        let batch = tinyBatch(samples: [0, 1, 2, 5])
        let value = loss(model, batch)
        value.backward()
        return (value.item(), Dictionary(uniqueKeysWithValues: model.parameters().map { ($0.name, $0.tensor.grad?.floats() ?? []) }))
    }

    @Test("projecting only the learned positions gives the loss and every gradient of projecting them all")
    func learnedPositionsOnly() throws {
        let batch = tinyBatch(samples: [0, 1, 2, 5])
        let learned = batch.lossTokenCount, positions = batch.inputs.batchSize * (batch.inputs.length - 1)
        try #require(learned > 0 && learned < positions, "the batch must mix learned and ignored positions")
        let (ours, ourGradients) = Self.lossAndGradients { causalLanguageModelLoss(model: $0, inputs: $1.inputs, labels: $1.labels, normalizer: $1.lossTokenCount) }
        let (reference, referenceGradients) = Self.lossAndGradients(Self.allPositionsLoss)
        #expect(abs(ours - reference) <= 1e-6 * abs(reference), "\(ours) against \(reference)")
        #expect(ourGradients.keys == referenceGradients.keys)
        var compared = 0
        for (name, gradient) in referenceGradients where !gradient.isEmpty {
            let theirs = try #require(ourGradients[name])
            let scale = max(gradient.map { abs($0) }.max()!, 1e-12)
            let difference = zip(theirs, gradient).map { abs($0 - $1) }.max()!
            #expect(theirs.count == gradient.count && difference <= 1e-5 * scale, "\(name): \(difference) of \(scale)")
            compared += 1
        }
        // The output head, the text layers, the cross-attention layer and the image encoder.
        #expect(compared > 20)
    }
}
