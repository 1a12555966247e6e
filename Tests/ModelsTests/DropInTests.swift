import Checkpoint
import Foundation
import Layers
import Models
import Testing
import TensorCore
import Yams
import _TestSupport

/// The adapter layouts shipped in `adapters/`.
private func layout(_ name: String) throws -> AdapterLayout {
    let text = try String(contentsOf: Fixtures.repositoryRoot.appendingPathComponent("adapters/\(name).yaml"), encoding: .utf8)
    return try YAMLDecoder().decode(AdapterLayout.self, from: text)
}

/// A fresh temporary directory, removed by the caller.
private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-dropin-\(UInt64.random(in: 0...UInt64.max))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The bytes of every parameter whose name starts with one of `prefixes`.
private func bytes(of model: Module, prefixes: [String]) -> [String: [UInt8]] {
    var result: [String: [UInt8]] = [:]
    for (name, tensor) in model.parameters() where prefixes.contains(where: name.hasPrefix) {
        let source = tensor.contiguous()
        result[name] = Array(UnsafeRawBufferPointer(start: source.rawPointer, count: source.elementCount * source.dtype.byteSize))
    }
    return result
}

@Suite("Drop-in adapters: vlm adapters init")
struct DropInTests {
    static let llamaDirectory = Fixtures.url("llama/gqa2_untied_padded")

    @Test("the shipped layouts place cross-attention where the published model has it")
    func layouts() throws {
        let published = try layout("llama-3.2-11b-vision")
        #expect(try published.crossAttentionIndices(textLayers: 32) == [3, 8, 13, 18, 23, 28, 33, 38])
        #expect(try AdapterLayout(crossAttention: .every(4, first: 3), vision: published.vision)
            .crossAttentionIndices(textLayers: 32) == [3, 8, 13, 18, 23, 28, 33, 38])
        let config = try published.mllamaConfig(for: LlamaConfig(
            vocabSize: 128_256, hiddenSize: 4096, intermediateSize: 14_336, numHiddenLayers: 32, numAttentionHeads: 32,
            numKeyValueHeads: 8))
        #expect(config.textConfig.llama.numHiddenLayers == 40)
        #expect(config.imageTokenIndex == 128_256)
        #expect(config.visionConfig.visionOutputDim == 7680)
        let tiny = try layout("tiny")
        #expect(try tiny.crossAttentionIndices(textLayers: 2) == [1])
        #expect(try tiny.crossAttentionIndices(textLayers: 5) == [1, 4])
        #expect(throws: AdapterLayout.Mismatch.self) { try tiny.crossAttentionIndices(textLayers: 1) }
    }

    /// transformers refuses its default 8 tile grids with any max_num_tiles but 4, so a layout's
    /// config must list the grids of its own tile count (the world's one-tile encoder: just 1 × 1).
    @Test("a layout's tile grids follow its max_num_tiles, and gate_init sets every gate")
    func tileGridsAndGateInit() throws {
        #expect(MllamaVisionConfig.supportedAspectRatios(maxNumTiles: 4) == MllamaVisionConfig.defaultSupportedAspectRatios)
        #expect(MllamaVisionConfig.supportedAspectRatios(maxNumTiles: 1) == [[1, 1]])
        #expect(MllamaVisionConfig.supportedAspectRatios(maxNumTiles: 2) == [[1, 1], [1, 2], [2, 1]])
        let world = try layout("world")
        #expect(world.vision.maxNumTiles == 1 && world.vision.supportedAspectRatios == [[1, 1]])
        #expect(try layout("llama-3.2-11b-vision").vision.supportedAspectRatios == MllamaVisionConfig.defaultSupportedAspectRatios)
        #expect(world.gateInit == 0)

        var opened = try layout("tiny")
        opened.gateInit = 0.25
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try AdapterInitialization.initialize(textModel: Self.llamaDirectory, layout: opened, output: directory)
        let checkpoint = try SafetensorsCheckpoint(path: directory.appendingPathComponent("model.safetensors").path)
        let gates = checkpoint.names.filter { $0.hasSuffix("cross_attn_attn_gate") || $0.hasSuffix("cross_attn_mlp_gate") }
        #expect(!gates.isEmpty)
        for name in gates { #expect(try checkpoint.tensor(name).floats() == [0.25], "\(name)") }
        #expect(throws: (any Error).self) {
            try YAMLDecoder().decode(AdapterLayout.self, from: "cross_attention: {every: 1}\nvision: {hidden_size: 8, num_hidden_layers: 1, attention_heads: 2, intermediate_size: 8}\ngate_init: .nan")
        }
    }

    @Test("an adapted model computes the text model's logits bit for bit, with or without images, before and after training")
    func dropIn() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try AdapterInitialization.initialize(textModel: Self.llamaDirectory, layout: try layout("tiny"), output: directory, seed: 3)

        let llama = try LlamaForCausalLM.load(directory: Self.llamaDirectory)
        let model = try MllamaForConditionalGeneration.load(directory: directory)
        let inputs = try SafetensorsFile(path: Self.llamaDirectory.appendingPathComponent("inputs.safetensors").path)
        let ids = try inputs.tensor("input_ids"), mask = try inputs.tensor("attention_mask")
        let textLogits = withNoGrad { llama(ids, attentionMask: mask) }.floats()
        #expect(withNoGrad { model(inputIds: ids, attentionMask: mask) }.floats() == textLogits)

        // Gates at 0: images change nothing.
        let b = ids.shape[0], t = ids.shape[1]
        var generator = RandomGenerator(seed: 9)
        let pixels = Tensor.randomNormal([b, 1, 4, 3, 28, 28], using: &generator)
        let ratio = Tensor(indices: Array(repeating: 6, count: b), shape: [b, 1])          // 2 × 2 tiles
        let tiles = Tensor(indices: Array(repeating: 1, count: b * 4), shape: [b, 1, 4])
        var crossValues = Array(repeating: 1, count: b * t * 4)
        for row in 0..<b { for tile in 0..<4 { crossValues[(row * t) * 4 + tile] = 0 } }   // the first token sees no image
        let cross = Tensor(indices: crossValues, shape: [b, t, 1, 4])
        func imageLogits() -> [Float] {
            withNoGrad { model(inputIds: ids, attentionMask: mask, pixelValues: pixels, aspectRatioIds: ratio,
                               aspectRatioMask: tiles, crossAttentionMask: cross) }.floats()
        }
        #expect(imageLogits() == textLogits)

        // Train the adapters, the encoder, the projector and the new rows for a few steps.
        let textPrefixes = ["language_model.model.layers.0.", "language_model.model.layers.2.", "language_model.model.norm",
                            "language_model.lm_head", "language_model.model.embed_tokens.weight"]
        let frozenBefore = bytes(of: model, prefixes: textPrefixes)
        let trained = model.setTrainable([.crossAttentionLayers, .visionModel, .projector, .extraEmbeddingRows])
        #expect(!trained.isEmpty && trained.allSatisfy { !textPrefixes.contains(where: $0.hasPrefix) })
        let optimizer = AdamW(module: model, learningRate: 1e-2, weightDecay: 0)
        let targets = ids.slice(axis: 1, 1..<t).contiguous()
        for _ in 0..<5 {
            let logits = model(inputIds: ids, attentionMask: mask, pixelValues: pixels, aspectRatioIds: ratio,
                               aspectRatioMask: tiles, crossAttentionMask: cross)
            crossEntropy(logits: logits.slice(axis: 1, 0..<(t - 1)).contiguous(), targets: targets).backward()
            optimizer.step()
            optimizer.zeroGradients()
        }
        #expect(bytes(of: model, prefixes: textPrefixes) == frozenBefore, "frozen text weights are byte-identical")
        #expect(imageLogits() != textLogits, "trained gates let the image in")
        #expect(withNoGrad { model(inputIds: ids, attentionMask: mask) }.floats() == textLogits, "text-only output is still the text model's")

        // The trained checkpoint swaps in where the text model was.
        let trainedDirectory = directory.appendingPathComponent("trained")
        try model.save(to: trainedDirectory)
        let reloaded = try MllamaForConditionalGeneration.load(directory: trainedDirectory)
        #expect(withNoGrad { reloaded(inputIds: ids, attentionMask: mask) }.floats() == textLogits)
    }

    @Test("initialising from a text model with a missing layer tensor names it")
    func missingTextTensor() throws {
        let source = try temporaryDirectory(), output = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: source); try? FileManager.default.removeItem(at: output) }
        try FileManager.default.copyItem(at: Self.llamaDirectory.appendingPathComponent("config.json"),
                                         to: source.appendingPathComponent("config.json"))
        var tensors = try SafetensorsFile(path: Self.llamaDirectory.appendingPathComponent("model.safetensors").path).tensors()
        tensors["model.layers.1.mlp.up_proj.weight"] = nil
        try writeSafetensors(tensors: tensors, to: source.appendingPathComponent("model.safetensors"))
        #expect {
            try AdapterInitialization.initialize(textModel: source, layout: try layout("tiny"), output: output)
        } throws: { "\($0)".contains("language_model.model.layers.2.mlp.up_proj.weight") }
    }
}
