import Checkpoint
import Foundation
import Layers
import Models
import Testing
import TensorCore
import Training
import _TestSupport
@testable import vlm

@Suite("vlm train with language_model: lora on the token-stream model", .serialized)
struct LoRATrainTests {
    /// One SFT stage on the tiny world: the projector in full, LoRA (r 4, α 8) on the text model's
    /// attention projections; a large learning rate so that B leaves zero in 3 steps.
    static func train(in scratch: Scratch) throws -> URL {
        try runVLM(["adapters", "init", "--text-model", TinyVisionSetup.folder.appendingPathComponent("llama").path,
                    "--adapter", repositoryFile("adapters/world-llava-linear.yaml").path, "--out", scratch.path("init")])
        try """
            stages:
              - {name: sft, kind: sft, datasets: [qa-train.jsonl], trainable: [projector], language_model: lora, lora_r: 4, lora_alpha: 8,
                 micro_batch_size: 4, max_length: 400, learning_rate: 0.01, steps: 3, checkpoint_every: 100}
            """.write(toFile: scratch.path("lora.yaml"), atomically: true, encoding: .utf8)
        try runVLM(["train", scratch.path("lora.yaml"), "--base", scratch.path("init"), "--out", scratch.path("run"),
                    "--data-root", TinyVisionSetup.world.path])
        return scratch.url.appendingPathComponent("run/sft/model")
    }

    @Test("the output folder holds the merged model and PEFT's adapter files; base + adapter gives the merged model's logits")
    func peftFilesAndMergedModel() throws {
        let scratch = try Scratch()
        let output = try Self.train(in: scratch)
        // PEFT's names for the 2-layer Llama: 2 layers × 4 projections × (A, B).
        let adapter = try SafetensorsFile(path: output.appendingPathComponent("peft/adapter_model.safetensors").path)
        var expected: [String] = []
        for layer in 0..<2 {
            for projection in ["q_proj", "k_proj", "v_proj", "o_proj"] {
                for matrix in ["lora_A", "lora_B"] { expected.append("base_model.model.model.layers.\(layer).self_attn.\(projection).\(matrix).weight") }
            }
        }
        #expect(adapter.names.sorted() == expected.sorted())
        #expect(try adapter.tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").shape == [4, 32])
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: output.appendingPathComponent("peft/adapter_config.json"))) as! [String: Any]
        #expect(config["peft_type"] as? String == "LORA" && config["task_type"] as? String == "CAUSAL_LM" && config["r"] as? Int == 4)
        #expect(config["lora_alpha"] as? Double == 8 && config["bias"] as? String == "none" && config["fan_in_fan_out"] as? Bool == false)
        #expect(Set(config["target_modules"] as? [String] ?? []) == ["q_proj", "k_proj", "v_proj", "o_proj"])

        // The saved model is a plain token-stream checkpoint (adapters merged), loaded strictly.
        let trained = try TokenStreamModel.load(directory: output)
        #expect(!trained.parameters().contains { $0.name.contains("lora_") })
        // The starting model's Llama with the PEFT files = the saved model's text path.
        let start = try TokenStreamModel.load(directory: scratch.url.appendingPathComponent("init"))
        let probe = Tensor(indices: [1, 40, 41, 42, 43, 44, 45, 46], shape: [1, 8])
        let before = withNoGrad { start.languageModel(probe) }.doubles()
        try PEFTAdapter.load(directory: output.appendingPathComponent(PEFTAdapter.stageSubfolder), into: start.languageModel)
        let adapted = withNoGrad { start.languageModel(probe) }.doubles()
        let merged = withNoGrad { trained.languageModel(probe) }.doubles()
        let (relative, _) = errors(merged, adapted)
        #expect(relative <= 1e-5, "merged vs base + adapter: relative L2 \(relative)")
        #expect(errors(adapted, before).maxAbs > 0, "training moved the adapters off zero")

        let summary = try JSONDecoder().decode(StageSummary.self, from: Data(contentsOf: scratch.url.appendingPathComponent("run/sft/summary.json")))
        // Projector [32, F] + bias, and 8 adapters of 4 × 32 + out × 4 (q, o: 32; k, v: 16 with one kv head of width 16).
        let projector = trained.projector.parameters().reduce(0) { $0 + $1.tensor.elementCount }
        let adapters = 2 * (2 * (4 * 32 + 32 * 4) + 2 * (4 * 32 + 16 * 4))
        #expect(summary.trainableParameters == projector + adapters)
        #expect(summary.textOnlyLogitsUnchanged == nil, "the drop-in check does not apply once the text model trains")
    }

    @Test("language_model: full trains every weight of the text model and writes no adapter files")
    func fullLanguageModel() throws {
        let scratch = try Scratch()
        try runVLM(["adapters", "init", "--text-model", TinyVisionSetup.folder.appendingPathComponent("llama").path,
                    "--adapter", repositoryFile("adapters/world-llava-linear.yaml").path, "--out", scratch.path("init")])
        try """
            stages:
              - {name: sft, kind: sft, datasets: [qa-train.jsonl], trainable: [projector], language_model: full,
                 micro_batch_size: 4, max_length: 400, learning_rate: 0.001, steps: 1, checkpoint_every: 100}
            """.write(toFile: scratch.path("full.yaml"), atomically: true, encoding: .utf8)
        try runVLM(["train", scratch.path("full.yaml"), "--base", scratch.path("init"), "--out", scratch.path("run"),
                    "--data-root", TinyVisionSetup.world.path])
        let output = scratch.url.appendingPathComponent("run/sft/model")
        #expect(!FileManager.default.fileExists(atPath: output.appendingPathComponent("peft/adapter_model.safetensors").path))
        let model = try TokenStreamModel.load(directory: output)
        let expected = model.parameters().filter { !$0.name.hasPrefix("vision_model.") }.reduce(0) { $0 + $1.tensor.elementCount }
        let summary = try JSONDecoder().decode(StageSummary.self, from: Data(contentsOf: scratch.url.appendingPathComponent("run/sft/summary.json")))
        #expect(summary.trainableParameters == expected && summary.textOnlyLogitsUnchanged == nil)
    }

    @Test("a rerun restores the adapters from the run checkpoint and writes the same adapter files")
    func resumeIsExact() throws {
        let scratch = try Scratch()
        let output = try Self.train(in: scratch)
        let reference = try SafetensorsFile(path: output.appendingPathComponent("peft/adapter_model.safetensors").path).tensors()
        // Forget that the stage finished: it restores its last checkpoint (adapters included) and saves again.
        try FileManager.default.removeItem(at: output)
        try FileManager.default.removeItem(at: scratch.url.appendingPathComponent("run/run.json"))
        try runVLM(["train", scratch.path("lora.yaml"), "--base", scratch.path("init"), "--out", scratch.path("run"),
                    "--data-root", TinyVisionSetup.world.path])
        let again = try SafetensorsFile(path: output.appendingPathComponent("peft/adapter_model.safetensors").path).tensors()
        #expect(again.keys.sorted() == reference.keys.sorted())
        for (name, tensor) in reference { #expect(again[name]!.floats() == tensor.floats(), "\(name)") }
    }
}
