import Testing
import TensorCore
import Layers
import _TestSupport

/// A two-level model with Hugging Face-style keys, for naming and loading tests.
private final class Block: Module {
    override class var checkpointKeys: [String: String] { ["queryProjection": "q_proj"] }
    let queryProjection: Linear
    @Param var gate: Tensor
    let mlp: Linear

    init(width: Int, generator: inout RandomGenerator) {
        queryProjection = Linear(inFeatures: width, outFeatures: width, bias: false, generator: &generator)
        mlp = Linear(inFeatures: width, outFeatures: width, generator: &generator)
        gate = Tensor(zeros: [1], requiresGrad: true)
        super.init()
    }
}

private final class Stack: Module {
    var layers: [Block]
    @Param var norm: Tensor

    init(depth: Int, width: Int, seed: UInt64) {
        var generator = RandomGenerator(seed: seed)
        layers = (0..<depth).map { _ in Block(width: width, generator: &generator) }
        norm = Tensor.filled(1, shape: [width])
        super.init()
        norm.requiresGrad = true
    }
}

@Suite("Modules: names, freezing, loading")
struct ModuleTests {
    @Test("parameter names follow checkpoint keys through children, arrays and wrappers")
    func names() {
        let model = Stack(depth: 2, width: 4, seed: 1)
        let names = Set(model.parameters().map(\.name))
        #expect(names == ["norm", "layers.0.q_proj.weight", "layers.0.gate", "layers.0.mlp.weight", "layers.0.mlp.bias",
                          "layers.1.q_proj.weight", "layers.1.gate", "layers.1.mlp.weight", "layers.1.mlp.bias"])
        let counts = model.parameterCount()
        #expect(counts.total == 4 + 2 * (16 + 1 + 16 + 4))
        #expect(counts.trainable == counts.total)
    }

    @Test("freezing by pattern stops gradients and unfreezing restores them")
    func freezing() {
        let model = Stack(depth: 2, width: 4, seed: 2)
        let frozen = model.freeze(matching: ["layers.*.mlp.*", "norm"])
        #expect(frozen.count == 5)
        #expect(model.parameterCount().trainable == 2 * (16 + 1))
        let x = randomFloats([3, 4], seed: 3)
        var h = x
        for block in model.layers { h = block.mlp(block.queryProjection(h)) * block.gate.tanh() + h }
        (h * model.norm).sum().backward()
        #expect(model.layers[0].mlp.weight.grad == nil)
        #expect(model.layers[0].queryProjection.weight.grad != nil)
        model.unfreeze(matching: ["**.bias"])
        #expect(model.layers[1].mlp.bias!.requiresGrad)
        #expect(!model.layers[1].mlp.weight.requiresGrad)
    }

    @Test("name patterns: * stays within a component, ** spans components")
    func patterns() {
        #expect(NamePattern("layers.*.mlp.weight").matches("layers.12.mlp.weight"))
        #expect(!NamePattern("layers.*.weight").matches("layers.12.mlp.weight"))
        #expect(NamePattern("**.cross_attn.*").matches("language_model.model.layers.3.cross_attn.q_proj"))
        #expect(NamePattern("**").matches("a.b.c"))
        #expect(NamePattern("vision_model.**").matches("vision_model.patch_embedding.weight"))
        #expect(!NamePattern("vision_model.**").matches("multi_modal_projector.weight"))
        #expect(NamePattern("*_attn_gate").matches("cross_attn_attn_gate"))
    }

    @Test("strict loading lists every missing, unexpected and mis-shaped name")
    func strictLoading() throws {
        let source = Stack(depth: 1, width: 4, seed: 4)
        let target = Stack(depth: 1, width: 4, seed: 5)
        var tensors = Dictionary(uniqueKeysWithValues: source.parameters().map { ($0.name, $0.tensor.detached()) })
        try target.loadParameters(tensors)
        #expect(target.layers[0].mlp.weight.floats() == source.layers[0].mlp.weight.floats())
        #expect(target.layers[0].mlp.weight.requiresGrad)
        #expect(target.layers[0].mlp.weight.storage !== source.layers[0].mlp.weight.storage)

        tensors["layers.0.gate"] = nil
        tensors["layers.0.extra"] = Tensor(zeros: [1])
        tensors["norm"] = Tensor(zeros: [5])
        do {
            try target.loadParameters(tensors, source: "model.safetensors")
            Issue.record("loading should have failed")
        } catch let error as ParameterLoadError {
            #expect(error.missing == ["layers.0.gate"])
            #expect(error.unexpected == ["layers.0.extra"])
            #expect(error.mismatchedShapes.map(\.name) == ["norm"])
            #expect(error.description.contains("model.safetensors"))
            #expect(error.description.contains("norm expects [4], found [5]"))
        }
    }

    @Test("frozen parameters keep the loaded tensor, including bfloat16 storage")
    func frozenLoadingKeepsStorage() throws {
        let model = Stack(depth: 1, width: 4, seed: 6)
        model.freeze()
        var tensors = Dictionary(uniqueKeysWithValues: model.parameters().map { ($0.name, $0.tensor.copy()) })
        let bf16 = randomFloats([4, 4], seed: 7).converted(to: .bfloat16)
        tensors["layers.0.mlp.weight"] = bf16
        try model.loadParameters(tensors)
        #expect(model.layers[0].mlp.weight.dtype == .bfloat16)
        #expect(model.layers[0].mlp.weight.storage === bf16.storage)
    }
}
