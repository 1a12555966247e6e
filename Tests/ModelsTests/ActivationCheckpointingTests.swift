import Layers
import Models
import Testing
import TensorCore
import _TestSupport

@Suite("Activation checkpointing: recomputed layers give the same gradients")
struct ActivationCheckpointingTests {
    @Test("a checkpointed function's gradients match central differences, for inputs and captured parameters (float64)")
    func checkpointedGradients() {
        let x = randomDoubles([3, 4], seed: 1)
        let w = randomDoubles([4, 4], seed: 2)
        let frozen = randomDoubles([4], seed: 3, requiresGrad: false)
        let failure = gradientCheck([x, w], tolerance: 1e-7) { tensors in
            checkpointed([tensors[0]], parameters: [tensors[1], frozen]) { inner in
                (inner[0].matmul(tensors[1]).tanh() + frozen) * inner[0]
            }
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    @Test("parameters get their gradients even when no input needs one")
    func parametersOnly() {
        let x = randomDoubles([2, 3], seed: 4, requiresGrad: false)
        let w = randomDoubles([3, 3], seed: 5)
        checkpointed([x], parameters: [w]) { $0[0].matmul(w).tanh() }.sum().backward()
        let checkpointedGradient = w.grad!.doubles()
        w.grad = nil
        x.matmul(w).tanh().sum().backward()
        #expect(checkpointedGradient == w.grad!.doubles())
    }

    /// The whole fusion model, every trainable group, gates open: the same loss and gradients with
    /// and without checkpointing (the recomputed forward is bit-identical; sums may be ordered differently).
    @Test("the fusion model trains the same with activation checkpointing (float64)")
    func wholeModel() {
        func gradients(checkpointing: Bool) -> (loss: Double, gradients: [String: [Double]]) {
            let model = MllamaForConditionalGeneration(config: tinyMllamaConfig(),
                                                       factory: ParameterFactory(.random(seed: 9, standardDeviation: 0.3)))
            convertToFloat64(model)
            for (name, tensor) in model.parameters() where name.hasSuffix("gate") || name.hasSuffix("gate_attn") || name.hasSuffix("gate_ffn") {
                setGate(tensor, 0.5)
            }
            model.setTrainable([.visionModel, .projector, .crossAttentionLayers])
            for (_, slot) in model.namedParameters() where slot.tensor!.requiresGrad {
                slot.tensor = slot.tensor!.converted(to: .float64).detached()
                slot.tensor!.requiresGrad = true
            }
            model.setActivationCheckpointing(checkpointing)
            let (pixels, ids, tiles) = tinyImages(batch: 2, seed: 51, dtype: .float64)
            let tokens = Tensor(indices: [1, 24, 5, 6, 2, 24, 7, 3], shape: [2, 4])
            let crossMask = Tensor(indices: [0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0], shape: [2, 4, 1, 2])
            let logits = model(inputIds: tokens, pixelValues: pixels, aspectRatioIds: ids, aspectRatioMask: tiles, crossAttentionMask: crossMask)
            let loss = (logits * logits).mean()
            loss.backward()
            let grads = Dictionary(uniqueKeysWithValues: model.trainableParameters().map { ($0.name, $0.tensor.grad?.doubles() ?? []) })
            return (loss.item(), grads)
        }
        let plain = gradients(checkpointing: false), recomputed = gradients(checkpointing: true)
        #expect(plain.loss == recomputed.loss)
        #expect(plain.gradients.keys.sorted() == recomputed.gradients.keys.sorted())
        #expect(plain.gradients.values.allSatisfy { !$0.isEmpty })
        for (name, expected) in plain.gradients {
            let actual = recomputed.gradients[name]!
            let scale = max(expected.map(abs).max() ?? 0, 1e-300)
            let worst = zip(expected, actual).map { abs($0 - $1) }.max() ?? 0
            #expect(worst / scale < 1e-12, "\(name): \(worst)")
        }
    }
}
