import Checkpoint
import Foundation
import Layers
import Models
import Testing
import TensorCore
import _TestSupport

/// Tests/Fixtures/peft/, written by Scripts/fixtures/make_peft_fixtures.py: a 2-layer Llama, a PEFT
/// LoRA adapter for it (r 4, α 8, on q/k/v/o and up_proj, B not zero), inputs with a left-padded
/// row, and PEFT's logits unmerged and after `merge_and_unload()`.
@Suite("PEFT LoRA adapters: read, applied, merged and written as PEFT does")
struct PEFTAdapterTests {
    static let folder = Fixtures.url("peft")

    static func inputs() throws -> (ids: Tensor, mask: Tensor) {
        let file = try SafetensorsFile(path: folder.appendingPathComponent("inputs.safetensors").path)
        return (try file.tensor("input_ids"), try file.tensor("attention_mask"))
    }

    /// The values at real (unpadded) positions of a `[B, T, V]` tensor.
    static func realPositions(_ logits: Tensor, mask: Tensor) -> [Double] {
        let flags = mask.integers(), values = logits.doubles(), v = logits.shape[2]
        return flags.enumerated().filter { $0.element != 0 }.flatMap { values[($0.offset * v)..<(($0.offset + 1) * v)] }
    }

    static func adaptedLlama() throws -> (LlamaForCausalLM, LoRAConfiguration) {
        let llama = try LlamaForCausalLM.load(directory: folder.appendingPathComponent("base"))
        let lora = try PEFTAdapter.load(directory: folder.appendingPathComponent("adapter"), into: llama)
        return (llama, lora)
    }

    @Test("base + PEFT adapter gives PEFT's logits (relative L2 ≤ 1e-5), and they differ from the base's")
    func logitsMatchPEFT() throws {
        let (llama, lora) = try Self.adaptedLlama()
        #expect(lora == LoRAConfiguration(rank: 4, alpha: 8, dropout: 0, targetModules: lora.targetModules))
        #expect(Set(lora.targetModules) == ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"])
        #expect(llama.lowRankAdaptedLayers().count == 2 * 5)
        let (ids, mask) = try Self.inputs()
        let expected = try SafetensorsFile(path: Self.folder.appendingPathComponent("logits.safetensors").path).tensor("logits")
        let logits = withNoGrad { llama(ids, attentionMask: mask) }
        let (relative, maxAbs) = errors(Self.realPositions(logits, mask: mask), Self.realPositions(expected, mask: mask))
        #expect(relative <= 1e-5 && maxAbs <= 1e-4, "relative L2 \(relative), max abs \(maxAbs)")

        let base = try LlamaForCausalLM.load(directory: Self.folder.appendingPathComponent("base"))
        let plain = withNoGrad { base(ids, attentionMask: mask) }
        #expect(errors(Self.realPositions(plain, mask: mask), Self.realPositions(expected, mask: mask)).relativeL2 > 1e-3,
                "the fixture's adapter must change the logits")
    }

    @Test("merged and unmerged logits are equal (≤ 1e-5 relative), and equal PEFT's merge_and_unload")
    func mergedEqualsUnmerged() throws {
        let (llama, _) = try Self.adaptedLlama()
        let (ids, mask) = try Self.inputs()
        let unmerged = withNoGrad { llama(ids, attentionMask: mask) }
        llama.mergeLowRankAdapters()
        #expect(llama.lowRankAdaptedLayers().isEmpty && !llama.parameters().contains { $0.name.contains("lora_") })
        let merged = withNoGrad { llama(ids, attentionMask: mask) }
        let (relative, _) = errors(Self.realPositions(merged, mask: mask), Self.realPositions(unmerged, mask: mask))
        #expect(relative <= 1e-5, "relative L2 \(relative)")
        let peftMerged = try SafetensorsFile(path: Self.folder.appendingPathComponent("logits.safetensors").path).tensor("merged_logits")
        let (againstPEFT, _) = errors(Self.realPositions(merged, mask: mask), Self.realPositions(peftMerged, mask: mask))
        #expect(againstPEFT <= 1e-5, "relative L2 \(againstPEFT)")
    }

    @Test("written back, the adapter has PEFT's keys, shapes and bytes, and its config PEFT's fields")
    func roundTrip() throws {
        let (llama, lora) = try Self.adaptedLlama()
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("peft-roundtrip-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try PEFTAdapter.write(from: llama, configuration: lora, baseModel: "base", to: scratch)
        let original = try SafetensorsFile(path: Self.folder.appendingPathComponent("adapter/adapter_model.safetensors").path)
        let written = try SafetensorsFile(path: scratch.appendingPathComponent("adapter_model.safetensors").path)
        #expect(written.names.sorted() == original.names.sorted())
        #expect(written.names.contains("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"))
        for name in original.names {
            let (a, b) = (try original.tensor(name), try written.tensor(name))
            #expect(a.shape == b.shape && a.dtype == b.dtype && a.floats() == b.floats(), "\(name)")
        }
        let originalBytes = try Data(contentsOf: Self.folder.appendingPathComponent("adapter/adapter_model.safetensors"))
        let writtenBytes = try Data(contentsOf: scratch.appendingPathComponent("adapter_model.safetensors"))
        #expect(writtenBytes == originalBytes, "the file's bytes (header and data) should be PEFT's")

        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: scratch.appendingPathComponent("adapter_config.json"))) as! [String: Any]
        #expect(config["peft_type"] as? String == "LORA" && config["task_type"] as? String == "CAUSAL_LM")
        #expect(config["r"] as? Int == 4 && config["lora_alpha"] as? Double == 8 && config["bias"] as? String == "none")
        #expect(config["fan_in_fan_out"] as? Bool == false && config["base_model_name_or_path"] as? String == "base")
        // Read back by VLMKit's own reader: the same configuration.
        let again = try LlamaForCausalLM.load(directory: Self.folder.appendingPathComponent("base"))
        #expect(try PEFTAdapter.load(directory: scratch, into: again) == lora)
    }

    @Test("an adapter that does not fit the model is refused, naming the tensor")
    func strictLoading() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("peft-bad-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.folder.appendingPathComponent("adapter/adapter_config.json"),
                                         to: scratch.appendingPathComponent("adapter_config.json"))
        let original = try SafetensorsFile(path: Self.folder.appendingPathComponent("adapter/adapter_model.safetensors").path)
        var tensors = try original.tensors()
        tensors["base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"] = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
        try writeSafetensors(tensors: tensors, to: scratch.appendingPathComponent("adapter_model.safetensors"))
        let llama = try LlamaForCausalLM.load(directory: Self.folder.appendingPathComponent("base"))
        #expect { try PEFTAdapter.load(directory: scratch, into: llama) } throws: { error in
            "\(error)".contains("layers.7.self_attn.q_proj.lora_A.weight") && "\(error)".contains("names no linear layer")
        }
        tensors.removeValue(forKey: "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight")
        tensors.removeValue(forKey: "base_model.model.model.layers.1.mlp.up_proj.lora_B.weight")
        try writeSafetensors(tensors: tensors, to: scratch.appendingPathComponent("adapter_model.safetensors"))
        #expect { try PEFTAdapter.load(directory: scratch, into: llama) } throws: { error in
            "\(error)".contains("model.layers.1.mlp.up_proj") && "\(error)".contains("lora_A but not lora_B")
        }
    }
}
