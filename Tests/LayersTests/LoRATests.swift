import Layers
import Testing
import TensorCore
import _TestSupport

@Suite("LoRA: the low-rank update of a frozen linear layer")
struct LoRATests {
    /// A `[5, 4]` layer with a bias and a rank-2 adapter whose B is not zero, all float64.
    static func adaptedLayer(alpha: Double = 6) -> Linear {
        let layer = Linear(weight: randomDoubles([5, 4], seed: 1, requiresGrad: false), bias: randomDoubles([5], seed: 2, requiresGrad: false))
        layer.adapter = LowRankAdapter(down: randomDoubles([2, 4], seed: 3), up: randomDoubles([5, 2], seed: 4), alpha: alpha)
        return layer
    }

    /// y = W x + b + (α/r)·B(A x), written out element by element (α = 6, r = 2: scale 3).
    @Test("the output is W x + b + (alpha/r) B A x")
    func forwardFormula() {
        let layer = Self.adaptedLayer()
        let x = randomDoubles([3, 4], seed: 5, requiresGrad: false)
        let y = withNoGrad { layer(x) }.doubles()
        let (w, b, a, bb, xs) = (layer.weight.doubles(), layer.bias!.doubles(), layer.adapter!.down.weight.doubles(),
                                 layer.adapter!.up.weight.doubles(), x.doubles())
        #expect(layer.adapter!.scale == 3)
        for row in 0..<3 {
            for o in 0..<5 {
                var expected = b[o]
                for i in 0..<4 { expected += w[o * 4 + i] * xs[row * 4 + i] }
                for k in 0..<2 {
                    var ax = 0.0
                    for i in 0..<4 { ax += a[k * 4 + i] * xs[row * 4 + i] }
                    expected += 3 * bb[o * 2 + k] * ax
                }
                #expect(abs(y[row * 5 + o] - expected) <= 1e-12 * max(1, abs(expected)))
            }
        }
    }

    @Test("gradients of A, B and the input match central differences (float64); the frozen W gets none")
    func gradients() {
        let layer = Self.adaptedLayer()
        let x = randomDoubles([2, 3, 4], seed: 6)
        let failure = gradientCheck([x, layer.adapter!.down.weight, layer.adapter!.up.weight]) { inputs in layer(inputs[0]) }
        #expect(failure == nil, "\(failure ?? "")")
        #expect(layer.weight.grad == nil && layer.bias!.grad == nil)
    }

    @Test("a fresh adapter is zero: attaching it changes no output; A is uniform in ±1/√in, B is zero")
    func freshAdapterIsIdentity() {
        var generator = RandomGenerator(seed: 8)
        let layer = Linear(inFeatures: 16, outFeatures: 6, bias: true, generator: &generator)
        let x = randomFloats([3, 16], seed: 9)
        let before = withNoGrad { layer(x) }.floats()
        layer.adapter = LowRankAdapter(inFeatures: 16, outFeatures: 6, rank: 4, alpha: 8, generator: &generator)
        #expect(withNoGrad { layer(x) }.floats() == before)
        let a = layer.adapter!.down.weight.floats()
        #expect(layer.adapter!.down.weight.shape == [4, 16] && layer.adapter!.up.weight.shape == [6, 4])
        #expect(a.allSatisfy { abs($0) <= 0.25 } && Set(a).count == a.count)
        #expect(layer.adapter!.up.weight.floats().allSatisfy { $0 == 0 })
    }

    @Test("adapter tensors are named lora_A.weight and lora_B.weight beside the layer's weight")
    func names() {
        let layer = Self.adaptedLayer()
        #expect(layer.parameters().map(\.name) == ["weight", "bias", "lora_A.weight", "lora_B.weight"])
        #expect(layer.trainableParameters().map(\.name) == ["lora_A.weight", "lora_B.weight"])
    }

    @Test("merging folds s·B·A into W: the same outputs, and no adapter left")
    func merge() {
        let layer = Self.adaptedLayer()
        let x = randomDoubles([3, 4], seed: 10, requiresGrad: false)
        let unmerged = withNoGrad { layer(x) }
        let merged = layer.parametersWithAdaptersMerged()
        #expect(merged.map(\.name) == ["weight", "bias"])
        layer.mergeAdapter()
        #expect(layer.adapter == nil && !layer.weight.requiresGrad)
        #expect(merged[0].tensor.doubles() == layer.weight.doubles())
        #expect(closeness(withNoGrad { layer(x) }, unmerged, rtol: 1e-12, atol: 1e-12) == nil)
    }

    @Test("dropout acts on the update's input in training only")
    func dropout() {
        let layer = Linear(weight: randomFloats([3, 8], seed: 11), bias: nil)
        layer.adapter = LowRankAdapter(down: randomFloats([2, 8], seed: 12), up: randomFloats([3, 2], seed: 13), alpha: 2, dropout: 0.5, seed: 1)
        let x = randomFloats([4, 8], seed: 14)
        let inference = withNoGrad { layer(x) }.floats()
        layer.train()
        let training = withNoGrad { layer(x) }.floats()
        layer.eval()
        #expect(training != inference)
        #expect(withNoGrad { layer(x) }.floats() == inference)
    }

    @Test("restarting the dropout streams from a seed gives the same masks again, whatever ran before; each adapter its own")
    func dropoutRestart() {
        final class Pair: Module {
            let first = Linear(weight: randomFloats([8, 8], seed: 21), bias: nil)
            let second = Linear(weight: randomFloats([8, 8], seed: 22), bias: nil)
        }
        let model = Pair()
        for (index, (_, layer)) in model.namedLinearLayers().enumerated() {
            layer.adapter = LowRankAdapter(down: randomFloats([2, 8], seed: 23), up: randomFloats([8, 2], seed: 24),
                                           alpha: 2, dropout: 0.5, seed: UInt64(index))
        }
        let x = randomFloats([4, 8], seed: 25)
        model.train()
        func updates() -> [[Float]] {
            model.namedLinearLayers().map { entry in withNoGrad { entry.layer.adapter!(x, training: true) }.floats() }
        }
        model.restartLowRankDropout(seed: 7)
        let first = updates()
        _ = updates()                                  // the streams move on
        #expect(updates() != first)
        model.restartLowRankDropout(seed: 7)
        #expect(updates() == first)
        model.restartLowRankDropout(seed: 8)
        #expect(updates() != first)
        #expect(first[0] != first[1], "the two adapters (same weights) draw different masks")
    }

    @Test("adapters attach by PEFT's target-module rule, in a fixed order from the seed")
    func attaching() {
        final class Block: Module {
            override class var checkpointKeys: [String: String] { ["query": "q_proj", "value": "v_proj", "out": "o_proj"] }
            let query: Linear, value: Linear, out: Linear
            init(_ generator: inout RandomGenerator) {
                query = Linear(inFeatures: 4, outFeatures: 4, bias: false, generator: &generator)
                value = Linear(inFeatures: 4, outFeatures: 2, bias: false, generator: &generator)
                out = Linear(inFeatures: 4, outFeatures: 4, bias: false, generator: &generator)
                super.init()
            }
        }
        final class Stack: Module {
            var layers: [Block]
            override init() { var generator = RandomGenerator(seed: 1); layers = [Block(&generator), Block(&generator)]; super.init() }
        }
        let configuration = LoRAConfiguration(rank: 2, alpha: 4, targetModules: ["q_proj", "v_proj"])
        let model = Stack(), again = Stack()
        let names = model.attachLowRankAdapters(configuration, seed: 3) { !$0.hasPrefix("layers.1.q") }
        #expect(names == ["layers.0.q_proj", "layers.0.v_proj", "layers.1.v_proj"])
        again.attachLowRankAdapters(configuration, seed: 3) { !$0.hasPrefix("layers.1.q") }
        #expect(model.parameters().map { $0.tensor.floats() } == again.parameters().map { $0.tensor.floats() })
        #expect(model.layers[0].value.adapter!.up.weight.shape == [2, 2])
        #expect(model.parameters().map(\.name).contains("layers.1.v_proj.lora_B.weight"))
        #expect(configuration.problems.isEmpty)
        #expect(LoRAConfiguration(rank: 0, alpha: -1, dropout: 1, targetModules: []).problems.map(\.field)
                == ["lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"])
    }
}
