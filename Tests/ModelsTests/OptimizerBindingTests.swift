import Layers
import Models
import Testing
import TensorCore
import _TestSupport

@Suite("AdamW follows the model's parameters by name")
struct OptimizerBindingTests {
    /// One forward–backward–step on the tiny model's image path.
    private func trainOneStep(_ model: MllamaForConditionalGeneration, _ optimizer: AdamW) {
        let (pixels, ratios, tiles) = tinyImages(batch: 2, seed: 5)
        let ids = Tensor(indices: [24, 3, 4, 5, 24, 6, 7, 8], shape: [2, 4])
        let cross = Tensor(indices: Array(repeating: [1, 0], count: 8).flatMap { $0 }, shape: [2, 4, 1, 2])
        let logits = model(inputIds: ids, pixelValues: pixels, aspectRatioIds: ratios, aspectRatioMask: tiles,
                           crossAttentionMask: cross)
        crossEntropy(logits: logits.reshaped([8, 24]), targets: Tensor(indices: [3, 4, 5, 6, 6, 7, 8, 9], shape: [8])).backward()
        optimizer.step()
        optimizer.zeroGradients()
    }

    /// The trap of issue 10: `setTrainable` replaces the model's tensors with owned copies. An
    /// optimiser that kept the tensors it was built with updated nothing; bound to the slots, it
    /// updates what the model now holds, and no gradient is left behind on the model.
    @Test("an optimiser built before setTrainable still updates the model's parameters")
    func setTrainableAfterTheOptimiser() {
        let model = MllamaForConditionalGeneration(config: tinyMllamaConfig(), factory: ParameterFactory(.random(seed: 1, standardDeviation: 0.2)))
        // The gates start at 0, so on the first step only the cross-attention layers get gradients.
        let layer = model.languageModel.model.layers[1] as! MllamaCrossAttentionDecoderLayer
        model.setTrainable([.crossAttentionLayers])
        let optimizer = AdamW(module: model, learningRate: 1e-2, weightDecay: 0)
        model.setTrainable([.crossAttentionLayers])
        let before = layer.attentionGate.floats()
        trainOneStep(model, optimizer)
        #expect(layer.attentionGate.floats() != before, "the gate the model holds was updated")
        #expect(model.parameters().allSatisfy { $0.tensor.grad == nil }, "no gradient piles up on the model")
        #expect(optimizer.stepCounts["language_model.model.layers.1.cross_attn_attn_gate"] == 1)
    }

    @Test("the optimiser's state saved by name restores into a new optimiser and continues identically")
    func stateRoundTrip() throws {
        func makeModel() -> MllamaForConditionalGeneration {
            let model = MllamaForConditionalGeneration(config: tinyMllamaConfig(), factory: ParameterFactory(.random(seed: 2, standardDeviation: 0.2)))
            model.setTrainable([.projector, .crossAttentionLayers])
            return model
        }
        let reference = makeModel(), resumed = makeModel()
        let first = AdamW(module: reference, learningRate: 1e-2)
        for _ in 0..<2 { trainOneStep(reference, first) }
        // Copy weights and optimiser state into the second model and optimiser, then one more step each.
        try resumed.updateParameters(Dictionary(uniqueKeysWithValues: reference.trainableParameters().map { ($0.name, $0.tensor) }))
        let second = AdamW(module: resumed, learningRate: 1e-2)
        try second.restoreState(tensors: first.stateTensors(), stepCounts: first.stepCounts)
        trainOneStep(reference, first)
        trainOneStep(resumed, second)
        for ((name, a), (_, b)) in zip(reference.trainableParameters(), resumed.trainableParameters()) {
            #expect(a.floats() == b.floats(), "\(name) is bit-identical after resuming")
        }
        #expect(throws: OptimizerStateError.self) {
            try second.restoreState(tensors: ["vision_model.nope.exp_avg": Tensor(zeros: [1])], stepCounts: [:])
        }
    }
}
