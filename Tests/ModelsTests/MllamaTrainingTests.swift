import Checkpoint
import Foundation
import Layers
import Models
import Testing
import TensorCore
import _TestSupport

/// A tiny Mllama: text width 16 (4 heads over 2 kv heads), 3 decoder layers of which layer 1
/// cross-attends; vision width 8, 28-pixel tiles of 14-pixel patches (5 tokens, padded to 8),
/// up to 2 tiles, 2 local layers (the input of layer 1 kept) and 1 global layer.
func tinyMllamaConfig(vocabularySize: Int = 24, textWidth: Int = 16) -> MllamaConfig {
    let llama = LlamaConfig(vocabSize: vocabularySize, hiddenSize: textWidth, intermediateSize: textWidth * 3 / 2, numHiddenLayers: 3,
                            numAttentionHeads: 4, numKeyValueHeads: 2, rmsNormEps: 1e-5)
    let vision = MllamaVisionConfig(hiddenSize: 8, numHiddenLayers: 2, numGlobalLayers: 1, attentionHeads: 2,
                                    intermediateSize: 12, imageSize: 28, patchSize: 14, maxNumTiles: 2,
                                    intermediateLayersIndices: [1], visionOutputDim: 16,
                                    supportedAspectRatios: [[1, 1], [1, 2], [2, 1]])
    return MllamaConfig(textConfig: MllamaTextConfig(llama: llama, crossAttentionLayers: [1]), visionConfig: vision,
                        imageTokenIndex: vocabularySize)
}

/// Every parameter replaced by a float64 copy that requires gradients.
func convertToFloat64(_ module: Module) {
    for (_, slot) in module.namedParameters() {
        let converted = slot.tensor!.converted(to: .float64).detached()
        converted.requiresGrad = true
        slot.tensor = converted
    }
}

/// Sets a `[1]` gate parameter.
func setGate(_ gate: Tensor, _ value: Double) {
    if gate.dtype == .float64 { gate.doublePointer.pointee = value } else { gate.floatPointer.pointee = Float(value) }
}

/// `[B, N, X, C, 28, 28]` pixels for `images` images of one tile each (aspect ratio id 1, second tile padded).
func tinyImages(batch: Int, seed: UInt64, dtype: DType = .float32) -> (pixels: Tensor, ids: Tensor, tiles: Tensor) {
    let pixels = randomFloats([batch, 1, 2, 3, 28, 28], seed: seed)
    return (dtype == .float64 ? pixels.converted(to: .float64).detached() : pixels,
            Tensor(indices: Array(repeating: 1, count: batch), shape: [batch, 1]),
            Tensor(indices: Array((0..<batch).map { _ in [1, 0] }.joined()), shape: [batch, 1, 2]))
}

@Suite("Mllama training: gradients, identity at zero gates, overfitting, save and load")
struct MllamaTrainingTests {
    @Test("the cross-attention block's gradients match central differences (float64)",
          arguments: [CrossAttentionMasking.meta, .huggingface])
    func crossAttentionGradients(masking: CrossAttentionMasking) {
        let model = MllamaForConditionalGeneration(config: tinyMllamaConfig(), factory: ParameterFactory(.random(seed: 3, standardDeviation: 0.3)))
        let layer = model.languageModel.model.layers[1] as! MllamaCrossAttentionDecoderLayer
        convertToFloat64(layer)
        setGate(layer.attentionGate, 0.7)
        setGate(layer.mlpGate, -0.4)
        let x = randomDoubles([2, 3, 16], seed: 11)
        let image = randomDoubles([2, 10, 16], seed: 12)   // two tiles of 5 tokens
        // Row 0: token 0 sees nothing, tokens 1–2 see tile 0. Row 1: all see both tiles but token 2 sees tile 1 only.
        let tiles = Tensor(indices: [0, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 1], shape: [2, 3, 1, 2])
        let mask = PreparedCrossAttentionMask(tiles: tiles, tokensPerTile: 5, masking: masking, dtype: .float64)
        let inputs = [x, image] + layer.parameters().map(\.tensor)
        let failure = gradientCheck(inputs, tolerance: 1e-6) { tensors in
            let image = layer.crossAttention.keysValues(tensors[1])
            return layer(tensors[0], keys: image.keys, values: image.values, mask: mask)
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    @Test("a gated global encoder layer's gradients match central differences (float64)")
    func globalEncoderLayerGradients() {
        let model = MllamaForConditionalGeneration(config: tinyMllamaConfig(), factory: ParameterFactory(.random(seed: 4, standardDeviation: 0.3)))
        let layer = model.visionModel.globalTransformer.layers[0]
        convertToFloat64(layer)
        let x = randomDoubles([1, 8, 8], seed: 21)
        // Tokens 5–7 are padding: padding queries do not see padding keys.
        var additive = [Double](repeating: 0, count: 64)
        for i in 5..<8 { for j in 5..<8 { additive[i * 8 + j] = -Double.greatestFiniteMagnitude } }
        let mask = AttentionMask(additive: Tensor(additive, shape: [1, 1, 8, 8]))
        let failure = gradientCheck([x] + layer.parameters().map(\.tensor), tolerance: 1e-6) { values in
            layer(values[0], mask: mask)
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    /// The whole path from pixels to logits: gradients of a selection of parameters in every part
    /// (vision embeddings and gates, a local and the global layer, the projector, the cross-attention
    /// layer, the extra embedding rows) against central differences, with every gate nonzero.
    @Test("gradients through the whole model match central differences (float64)")
    func endToEndGradients() {
        let model = MllamaForConditionalGeneration(config: tinyMllamaConfig(), factory: ParameterFactory(.random(seed: 8, standardDeviation: 0.3)))
        convertToFloat64(model)
        let named = Dictionary(uniqueKeysWithValues: model.parameters())
        for (name, tensor) in named where name.hasSuffix("gate") || name.hasSuffix("gate_attn") || name.hasSuffix("gate_ffn") {
            setGate(tensor, name.count % 2 == 0 ? 0.6 : -0.5)
        }
        let checked = [
            "vision_model.class_embedding", "vision_model.gated_positional_embedding.gate",
            "vision_model.pre_tile_positional_embedding.gate", "vision_model.post_tile_positional_embedding.gate",
            "vision_model.layernorm_pre.bias", "vision_model.transformer.layers.0.mlp.fc2.bias",
            "vision_model.transformer.layers.1.input_layernorm.weight",
            "vision_model.global_transformer.layers.0.gate_attn", "vision_model.global_transformer.layers.0.gate_ffn",
            "multi_modal_projector.bias", "language_model.model.layers.1.cross_attn_attn_gate",
            "language_model.model.layers.1.cross_attn_mlp_gate", "language_model.model.layers.1.cross_attn.k_norm.weight",
            "language_model.model.embed_tokens.extra_weight",
        ].map { named[$0]! }
        for (_, tensor) in named { tensor.requiresGrad = false }
        for tensor in checked { tensor.requiresGrad = true }
        let (pixels, ids, tiles) = tinyImages(batch: 1, seed: 51, dtype: .float64)
        let tokens = Tensor(indices: [1, 24, 5, 6], shape: [1, 4])
        let crossMask = Tensor(indices: [0, 0, 1, 0, 1, 0, 1, 0], shape: [1, 4, 1, 2])
        let failure = gradientCheck(checked, tolerance: 1e-6) { _ in
            model(inputIds: tokens, pixelValues: pixels, aspectRatioIds: ids, aspectRatioMask: tiles, crossAttentionMask: crossMask)
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    /// `h = x + tanh(0)·attention = x` and `out = h + tanh(0)·mlp = h` exactly, so a fresh model's
    /// cross-attention layers are the identity: the logits with images are those without.
    @Test("with the gates at 0 the logits with images equal the logits without")
    func zeroGatesAreIdentity() {
        let model = MllamaForConditionalGeneration(config: tinyMllamaConfig(), factory: ParameterFactory(.random(seed: 5, standardDeviation: 0.1)))
        let (pixels, ids, tiles) = tinyImages(batch: 2, seed: 31)
        let tokens = Tensor(indices: [24, 3, 4, 5, 6, 24, 7, 8, 9, 10], shape: [2, 5])
        let crossMask = Tensor(indices: Array(repeating: [1, 0], count: 10).flatMap { $0 }, shape: [2, 5, 1, 2])
        for masking in [CrossAttentionMasking.meta, .huggingface] {
            model.crossAttentionMasking = masking
            let withImages = withNoGrad { model(inputIds: tokens, pixelValues: pixels, aspectRatioIds: ids, aspectRatioMask: tiles,
                                                crossAttentionMask: crossMask) }
            let without = withNoGrad { model(inputIds: tokens) }
            #expect(withImages.doubles() == without.doubles(), "\(masking)")
        }
    }

    /// Four random images, each with its own 5-token caption after `<|image|>`: the first caption
    /// token can only be predicted from the image. Only the cross-attention layer, the image
    /// encoder, the projector and the 8 extra embedding rows train; the text weights must come
    /// out byte for byte as they went in. (Width 32 and σ = 0.5: the frozen random head must be
    /// able to produce logits far enough apart for the loss to approach 0; with width 16 and
    /// σ = 0.2 it plateaus near 1.)
    @Test("a tiny model overfits an image-caption batch with the text weights frozen")
    func overfitsCaptions() {
        let model = MllamaForConditionalGeneration(config: tinyMllamaConfig(textWidth: 32),
                                                   factory: ParameterFactory(.random(seed: 6, standardDeviation: 0.5)))
        let trainable = model.setTrainable([.crossAttentionLayers, .visionModel, .projector, .extraEmbeddingRows])
        #expect(trainable.contains("language_model.model.layers.1.cross_attn.q_proj.weight"))
        #expect(trainable.contains("language_model.model.embed_tokens.extra_weight"))
        #expect(!trainable.contains("language_model.model.embed_tokens.weight"))
        #expect(!trainable.contains { $0.hasPrefix("language_model.model.layers.0.") || $0.hasPrefix("language_model.lm_head") })
        let textNames = Set(model.parameters().map(\.name)).subtracting(trainable)
        let textBytes = Dictionary(uniqueKeysWithValues: model.parameters().filter { textNames.contains($0.name) }.map { ($0.name, bytes(of: $0.tensor)) })

        let batch = 4
        let (pixels, ids, tiles) = tinyImages(batch: batch, seed: 41)
        let captions = [[3, 4, 5, 6, 7], [8, 9, 10, 11, 12], [13, 14, 15, 16, 17], [18, 19, 20, 21, 22]]
        let sequences = captions.map { [24] + $0 }                  // <|image|> caption
        let inputs = Tensor(indices: sequences.flatMap { $0.dropLast() }, shape: [batch, 5])
        let targets = Tensor(indices: captions.flatMap { $0 }, shape: [batch, 5])
        let crossMask = Tensor(indices: Array(repeating: [1, 0], count: batch * 5).flatMap { $0 }, shape: [batch, 5, 1, 2])
        let optimizer = AdamW(module: model, learningRate: 5e-3, weightDecay: 0)
        var losses: [Double] = []
        for _ in 0..<120 {
            let logits = model(inputIds: inputs, pixelValues: pixels, aspectRatioIds: ids, aspectRatioMask: tiles,
                               crossAttentionMask: crossMask)
            let loss = crossEntropy(logits: logits, targets: targets)
            losses.append(loss.item())
            loss.backward()
            optimizer.step()
            optimizer.zeroGradients()
        }
        #expect(losses[0] > 2, "initial loss \(losses[0])")
        #expect(losses.last! < 0.05, "final loss \(losses.last!) (trace \(losses.enumerated().filter { $0.offset % 25 == 0 }.map(\.element)))")
        for (name, tensor) in model.parameters() where textNames.contains(name) {
            #expect(bytes(of: tensor) == textBytes[name], "\(name) changed")
            #expect(tensor.grad == nil, "\(name) got a gradient")
        }
    }

    @Test("save then load gives back every tensor bit for bit, in the published key layout")
    func saveLoadRoundTrip() throws {
        let model = MllamaForConditionalGeneration(config: tinyMllamaConfig(), factory: ParameterFactory(.random(seed: 7, standardDeviation: 0.2)))
        model.setTrainable([.extraEmbeddingRows])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-mllama-\(UInt64.random(in: 0...UInt64.max))")
        defer { try? FileManager.default.removeItem(at: directory) }
        try model.save(to: directory)
        let file = try SafetensorsFile(path: directory.appendingPathComponent("model.safetensors").path)
        let names = Set(try file.tensors().keys)
        #expect(names.contains("language_model.model.embed_tokens.weight"))
        #expect(!names.contains("language_model.model.embed_tokens.extra_weight"))
        #expect(names.contains("language_model.model.layers.1.cross_attn_attn_gate"))
        #expect(names.contains("vision_model.global_transformer.layers.0.gate_attn"))
        #expect(names.contains("multi_modal_projector.bias"))
        #expect(try file.tensor("language_model.model.embed_tokens.weight").shape == [24 + 8, 16])

        let loaded = try MllamaForConditionalGeneration.load(directory: directory)
        #expect(loaded.config == model.config)
        let original = Dictionary(uniqueKeysWithValues: model.parameters().map { ($0.name, $0.tensor) })
        for (name, tensor) in loaded.parameters() {
            #expect(tensor.dtype == original[name]!.dtype && tensor.shape == original[name]!.shape, "\(name)")
            #expect(bytes(of: tensor) == bytes(of: original[name]!), "\(name)")
        }
    }

    @Test("a bf16 checkpoint loads as bf16, frozen, and saves back byte for byte")
    func bfloat16StaysBfloat16() throws {
        let source = Fixtures.url("mllama/tiny_single_image_56")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-mllama-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(at: source.appendingPathComponent("config.json"), to: directory.appendingPathComponent("config.json"))
        let tensors = try SafetensorsFile(path: source.appendingPathComponent("model.safetensors").path).tensors()
            .mapValues { $0.converted(to: .bfloat16) }
        try writeSafetensors(tensors: tensors, to: directory.appendingPathComponent("model.safetensors"))
        let model = try MllamaForConditionalGeneration.load(directory: directory)
        #expect(model.parameters().allSatisfy { $0.tensor.dtype == .bfloat16 && !$0.tensor.requiresGrad })
        let fixture = try MllamaFixture("tiny_single_image_56")
        for masking in [CrossAttentionMasking.meta, .huggingface] {
            model.crossAttentionMasking = masking
            let logits = fixture.logits(of: model)
            let expected = try fixture.tensor(masking == .meta ? "logits_meta" : "logits_hf", "logits")
            // Every weight rounded to 8 significant bits moves the logits by about 1 %.
            #expect(errors(logits.doubles(), expected.doubles()).relativeL2 <= 3e-2, "\(masking)")
        }
        let saved = model.checkpointTensors()
        #expect(Set(saved.keys) == Set(tensors.keys))
        for (name, tensor) in tensors { #expect(bytes(of: saved[name]!) == bytes(of: tensor), "\(name)") }
    }
}

/// A tensor's elements as bytes, in row-major order.
func bytes(of tensor: Tensor) -> [UInt8] {
    let contiguous = tensor.contiguous()
    return Array(UnsafeRawBufferPointer(start: contiguous.rawPointer, count: contiguous.elementCount * contiguous.dtype.byteSize))
}
