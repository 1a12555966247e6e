import Checkpoint
import Foundation
import Layers
import Models
import Testing
import TensorCore
import Yams
import _TestSupport

/// The token-stream comparison model on tinyMllamaConfig's encoder (two 28-pixel tiles of 5 tokens:
/// P = 10 positions per image) and a 2-layer Llama of width 16; `<|image|>` is 24.
func tinyTokenStreamConfig(_ projector: TokenStreamConfig.ProjectorType) -> TokenStreamConfig {
    let mllama = tinyMllamaConfig()
    var llama = mllama.textConfig.llama
    llama.numHiddenLayers = 2
    return TokenStreamConfig(textConfig: llama, visionConfig: mllama.visionConfig, imageTokenIndex: 24, projectorType: projector)
}

/// Two rows: row 0 has two images, row 1 one image and a padding image slot (aspect-ratio id 0),
/// each image expanded to 10 `<|image|>` tokens; row 1 is right-padded.
func tinyTokenStreamBatch(dtype: DType) -> (ids: Tensor, mask: Tensor, pixels: Tensor, ratios: Tensor, tiles: Tensor) {
    let image = 24, p = 10
    let row0 = [1] + Array(repeating: image, count: p) + [5] + Array(repeating: image, count: p) + [6]
    let row1 = [2] + Array(repeating: image, count: p) + [7, 8]
    let t = row0.count
    let ids = Tensor(indices: row0 + row1 + Array(repeating: 0, count: t - row1.count), shape: [2, t])
    let mask = Tensor(indices: Array(repeating: 1, count: t) + Array(repeating: 1, count: row1.count) + Array(repeating: 0, count: t - row1.count),
                      shape: [2, t])
    let pixels = randomFloats([2, 2, 2, 3, 28, 28], seed: 61)
    return (ids, mask, dtype == .float64 ? pixels.converted(to: .float64).detached() : pixels,
            Tensor(indices: [1, 2, 1, 0], shape: [2, 2]), Tensor(indices: [1, 0, 1, 1, 1, 0, 1, 0], shape: [2, 2, 2]))
}

@Suite("The token-stream comparison model (Mllama's encoder, LLaVA's fusion)")
struct TokenStreamTests {
    /// The projector, the encoder and — through the splice — their path into the frozen Llama,
    /// against central differences; row 1's padding image must not take positions.
    @Test("gradients through the whole model match central differences (float64)", arguments: TokenStreamConfig.ProjectorType.allCases)
    func endToEndGradients(projector: TokenStreamConfig.ProjectorType) {
        let model = TokenStreamModel(config: tinyTokenStreamConfig(projector), factory: ParameterFactory(.random(seed: 9, standardDeviation: 0.3)))
        convertToFloat64(model)
        let named = Dictionary(uniqueKeysWithValues: model.parameters())
        for (name, tensor) in named where name.hasSuffix("gate") || name.hasSuffix("gate_attn") || name.hasSuffix("gate_ffn") {
            setGate(tensor, 0.4)
        }
        var checkedNames = ["multi_modal_projector.linear_1.bias", "vision_model.class_embedding", "vision_model.gated_positional_embedding.gate",
                            "vision_model.transformer.layers.0.mlp.fc2.bias", "vision_model.global_transformer.layers.0.gate_ffn"]
        checkedNames += projector == .mlp2xGELU ? ["multi_modal_projector.linear_2.weight"] : ["multi_modal_projector.linear_1.weight"]
        let checked = checkedNames.map { named[$0]! }
        for (_, tensor) in named { tensor.requiresGrad = false }
        for tensor in checked { tensor.requiresGrad = true }
        let batch = tinyTokenStreamBatch(dtype: .float64)
        let failure = gradientCheck(checked, tolerance: 1e-6) { _ in
            model.logits(ModelInputs(inputIDs: batch.ids, attentionMask: batch.mask, pixelValues: batch.pixels,
                                     aspectRatioIDs: batch.ratios, aspectRatioMask: batch.tiles))
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    /// Causality places the splice: the first token's logits are the text model's alone; a change
    /// to row 0's second image changes nothing before its 10 positions and changes what follows.
    @Test("each image's features sit at its own <|image|> positions")
    func splicePlacement() {
        let model = TokenStreamModel(config: tinyTokenStreamConfig(.mlp2xGELU), factory: ParameterFactory(.random(seed: 4, standardDeviation: 0.3)))
        let batch = tinyTokenStreamBatch(dtype: .float32)
        func logits(_ pixels: Tensor) -> [Float] {
            withNoGrad { model.logits(ModelInputs(inputIDs: batch.ids, attentionMask: batch.mask, pixelValues: pixels,
                                                  aspectRatioIDs: batch.ratios, aspectRatioMask: batch.tiles)).floats() }
        }
        let v = 24, t = batch.ids.shape[1]
        let before = logits(batch.pixels)
        let textOnly = withNoGrad { model.languageModel(Tensor(indices: [1], shape: [1, 1])).floats() }
        // (Equal up to the summation order of a one-token and a 23-token matrix product.)
        #expect(zip(before[0..<v], textOnly).allSatisfy { abs($0 - $1) <= 1e-5 })
        var changed = batch.pixels.floats()
        let imageSize = 2 * 3 * 28 * 28
        for i in imageSize..<(2 * imageSize) { changed[i] = -changed[i] }           // row 0, image 1
        let after = logits(Tensor(changed, shape: batch.pixels.shape))
        let secondImageStart = 12                                                   // [1] + 10 image + [5]
        #expect(Array(after[0..<(secondImageStart * v)]) == Array(before[0..<(secondImageStart * v)]))
        #expect(Array(after[((t - 1) * v)..<(t * v)]) != Array(before[((t - 1) * v)..<(t * v)]))
        #expect(Array(after[(t * v)...]) == Array(before[(t * v)...]), "row 1 does not see row 0's images")
    }

    @Test("initialised from a Llama and a layout: the cross-attention model's encoder, the Llama's weights, logits that survive a save and load")
    func initialization() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("token-stream-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = tinyTokenStreamConfig(.linear)
        let llama = LlamaForCausalLM(config: config.textConfig, factory: ParameterFactory(.random(seed: 2, standardDeviation: 0.2)))
        try llama.save(to: folder.appendingPathComponent("llama"))
        var layout = AdapterLayout(crossAttention: .every(1, first: 0), vision: config.visionConfig, initializerRange: 0.05)
        try AdapterInitialization.initialize(textModel: folder.appendingPathComponent("llama"), layout: layout,
                                             output: folder.appendingPathComponent("cross"), seed: 11)
        for architecture in [AdapterLayout.Architecture.llavaLinear, .llavaMLP2x] {
            layout.architecture = architecture
            let out = folder.appendingPathComponent(architecture.rawValue)
            try AdapterInitialization.initializeTokenStream(textModel: folder.appendingPathComponent("llama"), layout: layout, output: out, seed: 11)
            let cross = try SafetensorsCheckpoint(path: folder.appendingPathComponent("cross/model.safetensors").path)
            let stream = try TokenStreamModel.load(directory: out)
            #expect(stream.config.projectorType == architecture.projectorType)
            let streamTensors = Dictionary(uniqueKeysWithValues: stream.parameters())
            let visionNames = streamTensors.keys.filter { $0.hasPrefix("vision_model.") }
            #expect(!visionNames.isEmpty)
            for name in visionNames { #expect(try cross.tensor(name).floats() == streamTensors[name]!.floats(), "\(name)") }
            for (name, tensor) in llama.parameters() { #expect(streamTensors["language_model." + name]!.floats() == tensor.floats(), "\(name)") }
            // Without images the model is the Llama, bit for bit.
            let text = Tensor(indices: [3, 4, 5, 6], shape: [1, 4])
            #expect(withNoGrad { stream.logits(ModelInputs(inputIDs: text)).floats() } == withNoGrad { llama(text).floats() })
            // The saved folder reloads to the same logits with images.
            let fresh = TokenStreamModel(config: stream.config, factory: ParameterFactory(.random(seed: 5, standardDeviation: 0.3)))
            try fresh.save(to: folder.appendingPathComponent("saved"))
            let reloaded = try LoadedModel.load(directory: folder.appendingPathComponent("saved"))
            #expect(reloaded.family == .tokenStream)
            let batch = tinyTokenStreamBatch(dtype: .float32)
            let inputs = ModelInputs(inputIDs: batch.ids, attentionMask: batch.mask, pixelValues: batch.pixels,
                                     aspectRatioIDs: batch.ratios, aspectRatioMask: batch.tiles)
            #expect(withNoGrad { reloaded.model.logits(inputs).floats() } == withNoGrad { fresh.logits(inputs).floats() })
        }
    }

    @Test("a token-stream layout names no cross-attention; a cross-attention layout needs it")
    func layoutDecoding() throws {
        let vision = "vision: {hidden_size: 8, num_hidden_layers: 2, num_global_layers: 1, attention_heads: 2, intermediate_size: 12, image_size: 28, patch_size: 14, max_num_tiles: 1, intermediate_layers_indices: [1], vision_output_dim: 16}"
        func decode(_ yaml: String) throws -> AdapterLayout { try YAMLDecoder().decode(AdapterLayout.self, from: yaml) }
        #expect(try decode("architecture: llava-mlp2x\n\(vision)").architecture == .llavaMLP2x)
        #expect(throws: (any Error).self) { try decode("architecture: llava-linear\ncross_attention: {every: 1}\n\(vision)") }
        #expect(throws: (any Error).self) { try decode(vision) }
        #expect(try decode("cross_attention: {every: 2}\n\(vision)").architecture == .crossAttention)
    }
}
