import Checkpoint
import Foundation
import Layers
import Models
import Testing
import TensorCore
import _TestSupport

/// Tests/Fixtures/llava-peft/, written by Scripts/fixtures/make_llava_peft_fixtures.py: PEFT's LoRA
/// adapter (r 4, α 8, q/k/v/o and up_proj of the text model, B not zero) for the tiny LLaVA of
/// Tests/Fixtures/llava/mlp_layer-2_default, PEFT's key names and shapes, and PEFT's logits on that
/// fixture's inputs, unmerged and after `merge_and_unload()`.
@Suite("PEFT LoRA adapters of LLaVA proper: keyed, read, merged as PEFT does")
struct LlavaPEFTAdapterTests {
    static let folder = Fixtures.url("llava-peft")
    static let llavaFolder = Fixtures.url("llava/mlp_layer-2_default")
    static let targets = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"]

    struct PEFTKeys: Decodable {
        let keys: [String: [Int]]
        let targetModules: String
        let plainListKeys: [String]
        enum CodingKeys: String, CodingKey { case keys, targetModules = "target_modules", plainListKeys = "plain_list_keys" }
    }

    static func peftKeys() throws -> PEFTKeys {
        try JSONDecoder().decode(PEFTKeys.self, from: Data(contentsOf: folder.appendingPathComponent("keys.json")))
    }

    static func inputs() throws -> (ids: Tensor, mask: Tensor, pixels: Tensor) {
        let file = try SafetensorsFile(path: llavaFolder.appendingPathComponent("inputs.safetensors").path)
        return (try file.tensor("input_ids"), try file.tensor("attention_mask"), try file.tensor("pixel_values"))
    }

    static func logits(_ model: LlavaForConditionalGeneration) throws -> Tensor {
        let (ids, mask, pixels) = try inputs()
        return withNoGrad { model(inputIds: ids, attentionMask: mask, pixelValues: pixels) }
    }

    /// The values at real (unpadded) positions of a `[B, T, V]` tensor.
    static func realPositions(_ logits: Tensor) throws -> [Double] {
        let flags = try inputs().mask.integers(), values = logits.doubles(), v = logits.shape[2]
        return flags.enumerated().filter { $0.element != 0 }.flatMap { values[($0.offset * v)..<(($0.offset + 1) * v)] }
    }

    static func expected(_ name: String) throws -> Tensor {
        try SafetensorsFile(path: folder.appendingPathComponent("logits.safetensors").path).tensor(name)
    }

    @Test("adapters VLMKit attaches to LLaVA's text model are written under PEFT's keys, shapes and target_modules")
    func writtenKeysArePEFTs() throws {
        let reference = try Self.peftKeys()
        let model = try LlavaForConditionalGeneration.load(directory: Self.llavaFolder)
        let lora = LoRAConfiguration(rank: 4, alpha: 8, targetModules: Self.targets)
        let adapted = model.attachLowRankAdapters(lora, seed: 3) { $0.hasPrefix("language_model.") }
        #expect(adapted.count == 2 * 5, "\(adapted)")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("llava-peft-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try PEFTAdapter.write(from: model, configuration: lora, baseModel: "base-llava", to: scratch)

        let written = try SafetensorsFile(path: scratch.appendingPathComponent(PEFTAdapter.weightsFile).path)
        let shapes = Dictionary(uniqueKeysWithValues: try written.names.map { ($0, try written.tensor($0).shape) })
        #expect(shapes == reference.keys)
        // A plain list of names would make PEFT adapt CLIP's attention too (the fixture's other key set).
        #expect(reference.plainListKeys.contains { $0.contains("vision_tower") })
        let config = try JSONDecoder().decode(PEFTAdapterConfig.self, from: Data(contentsOf: scratch.appendingPathComponent(PEFTAdapter.configFile)))
        #expect(config.targetModules == .pattern(reference.targetModules))
        #expect(config.baseModelNameOrPath == "base-llava" && config.r == 4 && config.loraAlpha == 8)
        let peftConfig = try JSONDecoder().decode(PEFTAdapterConfig.self,
                                                  from: Data(contentsOf: Self.folder.appendingPathComponent("adapter/adapter_config.json")))
        #expect(peftConfig.targetModules == config.targetModules)

        // Read back into a fresh model: the same adapters, so the same logits.
        let again = try LlavaForConditionalGeneration.load(directory: Self.llavaFolder)
        let read = try PEFTAdapter.load(directory: scratch, into: again)
        #expect(Set(read.targetModules) == Set(Self.targets) && read.rank == 4 && read.alpha == 8)
        #expect(try Self.logits(again).floats() == Self.logits(model).floats())
    }

    @Test("LLaVA + PEFT's adapter gives PEFT's logits; merged gives the same logits and PEFT's merge_and_unload")
    func readsPEFTsAdapter() throws {
        let model = try LlavaForConditionalGeneration.load(directory: Self.llavaFolder)
        let plain = try Self.logits(model)
        let lora = try PEFTAdapter.load(directory: Self.folder.appendingPathComponent("adapter"), into: model)
        #expect(Set(lora.targetModules) == Set(Self.targets))
        #expect(model.lowRankAdaptedLayers().count == 2 * 5)
        #expect(model.lowRankAdaptedLayers().allSatisfy { $0.name.hasPrefix("language_model.model.layers.") })
        let unmerged = try Self.logits(model)
        let expected = try Self.expected("logits")
        let (relative, maxAbs) = errors(try Self.realPositions(unmerged), try Self.realPositions(expected))
        #expect(relative <= 1e-5 && maxAbs <= 1e-4, "relative L2 \(relative), max abs \(maxAbs)")
        #expect(errors(try Self.realPositions(plain), try Self.realPositions(expected)).relativeL2 > 1e-3, "the adapter changes the logits")

        model.mergeLowRankAdapters()
        #expect(model.lowRankAdaptedLayers().isEmpty && !model.parameters().contains { $0.name.contains("lora_") })
        let merged = try Self.logits(model)
        #expect(errors(try Self.realPositions(merged), try Self.realPositions(unmerged)).relativeL2 <= 1e-5)
        let peftMerged = errors(try Self.realPositions(merged), try Self.realPositions(try Self.expected("merged_logits")))
        #expect(peftMerged.relativeL2 <= 1e-5 && peftMerged.maxAbs <= 1e-4, "\(peftMerged)")
    }

    @Test("a LLaVA adapter with tensors for a CLIP layer its target_modules excludes, or that misses a targeted text layer, is refused by name")
    func strictReading() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("llava-peft-bad-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.folder.appendingPathComponent("adapter/adapter_config.json"),
                                         to: scratch.appendingPathComponent("adapter_config.json"))
        var tensors = try SafetensorsFile(path: Self.folder.appendingPathComponent("adapter/adapter_model.safetensors").path).tensors()
        let model = try LlavaForConditionalGeneration.load(directory: Self.llavaFolder)
        let clipKey = "base_model.model.model.vision_tower.encoder.layers.0.self_attn.q_proj.lora_A.weight"
        var withCLIP = tensors
        withCLIP[clipKey] = tensors["base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"]
        try writeSafetensors(tensors: withCLIP, to: scratch.appendingPathComponent("adapter_model.safetensors"))
        #expect { try PEFTAdapter.load(directory: scratch, into: model) } throws: { error in
            "\(error)".contains("model.vision_tower.encoder.layers.0.self_attn.q_proj") && "\(error)".contains("not a target of target_modules")
        }
        let removed = "base_model.model.model.language_model.layers.1.self_attn.k_proj"
        tensors.removeValue(forKey: removed + ".lora_A.weight")
        tensors.removeValue(forKey: removed + ".lora_B.weight")
        try writeSafetensors(tensors: tensors, to: scratch.appendingPathComponent("adapter_model.safetensors"))
        #expect { try PEFTAdapter.load(directory: scratch, into: model) } throws: { error in
            "\(error)".contains("no adapter for 1 targeted layer") && "\(error)".contains("model.language_model.layers.1.self_attn.k_proj")
        }
        #expect(model.lowRankAdaptedLayers().isEmpty, "a refused adapter leaves the model as it was")
    }
}
