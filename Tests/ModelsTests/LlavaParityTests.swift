import Checkpoint
import Foundation
import Layers
@testable import Models
import Testing
import TensorCore
import _TestSupport

/// A case written by Scripts/fixtures/make_llava_fixtures.py.
private struct LlavaFixture {
    let directory: URL
    let inputIds: Tensor
    let attentionMask: Tensor
    let pixelValues: Tensor

    init(_ name: String) throws {
        directory = Fixtures.url("llava/\(name)")
        let inputs = try SafetensorsFile(path: directory.appendingPathComponent("inputs.safetensors").path)
        inputIds = try inputs.tensor("input_ids")
        attentionMask = try inputs.tensor("attention_mask")
        pixelValues = try inputs.tensor("pixel_values")
    }

    func expectedLogits() throws -> Tensor {
        try SafetensorsFile(path: directory.appendingPathComponent("logits.safetensors").path).tensor("logits")
    }

    /// The values at real (unpadded) positions of a `[B, T, V]` tensor.
    func realPositions(_ logits: Tensor) -> [Double] {
        let mask = attentionMask.integers(), values = logits.doubles()
        let v = logits.shape[2]
        return mask.enumerated().filter { $0.element != 0 }.flatMap { values[($0.offset * v)..<(($0.offset + 1) * v)] }
    }

    func logits(of model: LlavaForConditionalGeneration) -> Tensor {
        withNoGrad { model(inputIds: inputIds, attentionMask: attentionMask, pixelValues: pixelValues) }
    }
}

@Suite("LLaVA parity with transformers")
struct LlavaParityTests {
    /// Layer −2 / default / two-layer GELU projector / published names; layers [−3, 0, −1] / full /
    /// tanh GELU without bias / transformers 5 names; layer −1 / default / LLaVA-1's linear projector.
    static let cases = ["mlp_layer-2_default", "mlp_layers_full", "linear_layer-1_default"]

    @Test("float32 logits match LlavaForConditionalGeneration (relative L2 ≤ 1e-5, max abs ≤ 1e-4)", arguments: cases)
    func float32Logits(name: String) throws {
        let fixture = try LlavaFixture(name)
        let model = try LlavaForConditionalGeneration.load(directory: fixture.directory)
        let logits = fixture.logits(of: model)
        let expected = try fixture.expectedLogits()
        #expect(logits.shape == expected.shape)
        let (relative, maxAbs) = errors(fixture.realPositions(logits), fixture.realPositions(expected))
        #expect(relative <= 1e-5, "relative L2 \(relative)")
        #expect(maxAbs <= 1e-4, "max abs \(maxAbs)")
    }

    @Test("the images change the logits (the splice is not a no-op)")
    func imagesMatter() throws {
        let fixture = try LlavaFixture("mlp_layer-2_default")
        let model = try LlavaForConditionalGeneration.load(directory: fixture.directory)
        let withImages = fixture.logits(of: model)
        let shuffled = fixture.pixelValues.slice(axis: 0, 1..<fixture.pixelValues.shape[0])
        let other = Tensor.concatenate([shuffled, fixture.pixelValues.slice(axis: 0, 0..<1)], axis: 0)
        let swapped = withNoGrad { model(inputIds: fixture.inputIds, attentionMask: fixture.attentionMask, pixelValues: other) }
        #expect(errors(fixture.realPositions(swapped), fixture.realPositions(withImages)).maxAbs > 1e-3)
    }

    struct GenerationReference: Decodable {
        let prompts: [[Int]]
        let newTokens: [[Int]]
        enum CodingKeys: String, CodingKey { case prompts, newTokens = "new_tokens" }
    }

    @Test("greedy generation with images matches transformers' generate token for token (left-padded batch)",
          arguments: ["mlp_layer-2_default", "linear_layer-1_default"])
    func greedyGeneration(name: String) throws {
        let fixture = try LlavaFixture(name)
        let model = try LlavaForConditionalGeneration.load(directory: fixture.directory)
        let reference = try JSONDecoder().decode(GenerationReference.self, from: Data(contentsOf: fixture.directory.appendingPathComponent("generate.json")))
        let output = generate(with: model.conditioned(pixelValues: fixture.pixelValues), prompts: reference.prompts,
                              maxNewTokens: reference.newTokens[0].count, padToken: 0)
        #expect(output == reference.newTokens)
    }

    @Test("a checkpoint VLMKit writes has llava-hf's published names and reloads with identical logits", arguments: cases)
    func saveAndReload(name: String) throws {
        let fixture = try LlavaFixture(name)
        let model = try LlavaForConditionalGeneration.load(directory: fixture.directory)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-llava-\(UInt64.random(in: 0...UInt64.max))")
        defer { try? FileManager.default.removeItem(at: directory) }
        try model.save(to: directory)
        let names = try SafetensorsFile(path: directory.appendingPathComponent("model.safetensors").path).names
        let prefixes = ["vision_tower.vision_model.", "multi_modal_projector.", "language_model.model.", "language_model.lm_head."]
        #expect(names.allSatisfy { name in prefixes.contains { name.hasPrefix($0) } }, "\(names.filter { n in !prefixes.contains { n.hasPrefix($0) } })")
        #expect(names.contains("vision_tower.vision_model.encoder.layers.0.self_attn.out_proj.bias"))
        #expect(names.contains("vision_tower.vision_model.post_layernorm.weight"))
        let reloaded = try LlavaForConditionalGeneration.load(directory: directory)
        #expect(fixture.logits(of: reloaded).doubles() == fixture.logits(of: model).doubles())
        #expect(try LlavaConfig.load(from: directory.appendingPathComponent("config.json")) == model.config)

        // transformers 5's names load back the same.
        let newer = directory.appendingPathComponent("transformers5")
        try model.save(to: newer, layout: .transformers5)
        let newerNames = try SafetensorsFile(path: newer.appendingPathComponent("model.safetensors").path).names
        #expect(newerNames.allSatisfy { $0.hasPrefix("model.vision_tower.") || $0.hasPrefix("model.multi_modal_projector.")
                                        || $0.hasPrefix("model.language_model.") || $0.hasPrefix("lm_head.") })
        #expect(!newerNames.contains { $0.contains("vision_model.") })
        #expect(fixture.logits(of: try LlavaForConditionalGeneration.load(directory: newer)).doubles() == fixture.logits(of: model).doubles())

        // Kept for checking in transformers by hand (see make_llava_fixtures.py --check-load).
        if let keep = ProcessInfo.processInfo.environment["VLMKIT_KEEP_LLAVA_CHECKPOINT"] {
            for (suffix, layout) in [("", LlavaCheckpointLayout.published), ("-transformers5", .transformers5)] {
                let target = URL(fileURLWithPath: keep).appendingPathComponent(name + suffix)
                try model.save(to: target, layout: layout)
                for file in ["inputs.safetensors", "logits.safetensors"] {
                    try? FileManager.default.removeItem(at: target.appendingPathComponent(file))
                    try FileManager.default.copyItem(at: fixture.directory.appendingPathComponent(file), to: target.appendingPathComponent(file))
                }
            }
        }
    }

    @Test("the published, transformers 5 in-memory and transformers 5.24 saved names all map to the published layout")
    func checkpointNames() {
        let expected = "vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight"
        #expect(LlavaForConditionalGeneration.publishedName(expected) == expected)
        #expect(LlavaForConditionalGeneration.publishedName("model.vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight") == expected)
        #expect(LlavaForConditionalGeneration.publishedName("model.vision_tower.encoder.layers.1.mlp.fc1.weight") == expected)
        #expect(LlavaForConditionalGeneration.publishedName("vision_tower.encoder.layers.1.mlp.fc1.weight") == expected)
        #expect(LlavaForConditionalGeneration.publishedName("model.language_model.norm.weight") == "language_model.model.norm.weight")
        #expect(LlavaForConditionalGeneration.publishedName("lm_head.weight") == "language_model.lm_head.weight")
        #expect(LlavaForConditionalGeneration.publishedName("model.multi_modal_projector.linear_2.bias") == "multi_modal_projector.linear_2.bias")
    }

    @Test("LoadedModel loads model_type llava; parameter groups split the model into tower, projector and text model")
    func loadedModelAndGroups() throws {
        let loaded = try LoadedModel.load(directory: Fixtures.url("llava/mlp_layer-2_default"))
        #expect(loaded.family == .llava)
        let model = try #require(loaded.model as? LlavaForConditionalGeneration)
        #expect(model.parameterGroupNames == ["visionTower", "projector", "languageModel"])
        let all = Set(model.parameters().map(\.name))
        var covered = Set<String>()
        for group in LlavaParameterGroup.allCases {
            let trained = Set(model.setTrainable([group]))
            #expect(!trained.isEmpty && covered.isDisjoint(with: trained), "\(group)")
            covered.formUnion(trained)
        }
        #expect(covered == all)
        #expect(model.setTrainable([.projector]).allSatisfy { $0.hasPrefix("multi_modal_projector.") })
        // One training step's gradient reaches the projector and not the frozen tower.
        let fixture = try LlavaFixture("mlp_layer-2_default")
        model.logits(ModelInputs(inputIDs: fixture.inputIds, attentionMask: fixture.attentionMask, pixelValues: fixture.pixelValues))
            .sum().backward()
        #expect(model.trainableParameters().allSatisfy { $0.tensor.grad != nil })
    }
}

@Suite("LLaVA gradients (float64 finite differences)")
struct LlavaGradientTests {
    @Test("the splice passes gradients to the image features and the text embeddings")
    func splice() {
        let features = randomDoubles([2, 3, 4], seed: 21)          // (I, P, D)
        let embeddings = randomDoubles([2, 5, 4], seed: 22)        // (B, T, D)
        let image = 9
        let ids = Tensor(indices: [1, image, image, image, 4, image, image, image, 7, 8], shape: [2, 5])
        #expect(gradientCheck([features, embeddings]) { spliceImageFeatures($0[0], into: $0[1], inputIds: ids, imageTokenID: image) } == nil)
        // Text rows are untouched, image rows are the features in reading order.
        let spliced = spliceImageFeatures(features, into: embeddings, inputIds: ids, imageTokenID: image).doubles()
        let f = features.doubles(), e = embeddings.doubles()
        #expect(Array(spliced[0..<4]) == Array(e[0..<4]))
        #expect(Array(spliced[4..<16]) == Array(f[0..<12]))
        #expect(Array(spliced[20..<32]) == Array(f[12..<24]))
        #expect(Array(spliced[32..<40]) == Array(e[32..<40]))
    }

    @Test("the two-layer and single-linear projectors have correct gradients", arguments: [true, false])
    func projector(twoLayers: Bool) {
        let x = randomDoubles([2, 3, 5], seed: 31)
        let w1 = randomDoubles([4, 5], seed: 32), b1 = randomDoubles([4], seed: 33)
        let w2 = randomDoubles([4, 4], seed: 34), b2 = randomDoubles([4], seed: 35)
        let inputs = twoLayers ? [x, w1, b1, w2, b2] : [x, w1, b1]
        let projector = LlavaMultiModalProjector(linear1: Linear(weight: w1, bias: b1), activation: .gelu,
                                                 linear2: twoLayers ? Linear(weight: w2, bias: b2) : nil)
        #expect(gradientCheck(inputs) { _ in projector(x) } == nil)
    }

    @Test("a CLIP encoder layer (biased attention, quick GELU) has correct gradients")
    func clipLayer() throws {
        let config = CLIPVisionConfig(hiddenSize: 8, intermediateSize: 12, numHiddenLayers: 1, numAttentionHeads: 2,
                                      imageSize: 4, patchSize: 2)
        let layer = CLIPEncoderLayer(config: config, activation: .quickGELU,
                                     factory: ParameterFactory(.random(seed: 3, standardDeviation: 0.3)))
        for (_, slot) in layer.namedParameters() { slot.tensor = Tensor(slot.tensor!.doubles().map { $0 + 0.01 }, shape: slot.tensor!.shape) }
        let x = randomDoubles([2, 3, 8], seed: 41)
        #expect(gradientCheck([x]) { layer($0[0]) } == nil)
    }
}

@Suite("LLaVA with 16-bit weights")
struct LlavaHalfPrecisionTests {
    /// llava-hf publishes float16 weights; VLMKit keeps 16-bit weights as they are and computes in
    /// float32. Rounding every weight to 8 (bf16) or 11 (fp16) significant bits moves the logits of
    /// these tiny random models by a relative L2 under 2e-2 and 2e-3.
    @Test("bf16 and fp16 weights stay 16-bit and give logits close to the float32 reference",
          arguments: [(DType.bfloat16, 2e-2), (DType.float16, 2e-3)])
    func halfPrecision(dtype: DType, bound: Double) throws {
        let fixture = try LlavaFixture("mlp_layer-2_default")
        let model = try LlavaForConditionalGeneration.load(directory: fixture.directory)
        for (_, slot) in model.namedParameters() { slot.tensor = slot.tensor!.converted(to: dtype) }
        #expect(model.parameters().allSatisfy { $0.tensor.dtype == dtype })
        let logits = fixture.logits(of: model)
        let relative = errors(fixture.realPositions(logits), fixture.realPositions(try fixture.expectedLogits())).relativeL2
        #expect(relative <= bound, "relative L2 \(relative)")
    }
}
