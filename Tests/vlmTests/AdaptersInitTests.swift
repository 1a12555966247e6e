import ArgumentParser
import Checkpoint
import Layers
import Foundation
import Models
import Testing
import TensorCore
@testable import Tokenization
import _TestSupport
@testable import vlm
#if canImport(Glibc)
import Glibc
#endif

@Suite("vlm adapters init: inputs and existing outputs are safe")
struct AdaptersInitSafetyTests {
    let layout = Fixtures.repositoryRoot.appendingPathComponent("adapters/tiny.yaml").path

    @Test("--out equal to the text model (or holding it) is refused, and the text model is untouched")
    func outIsInput() throws {
        let scratch = try Scratch()
        let llama = scratch.url.appendingPathComponent("llama")
        try copyFixture("llama/gqa2_untied_padded", to: llama)
        let before = try Data(contentsOf: llama.appendingPathComponent("model.safetensors"))
        for out in [llama.path, llama.path + "/", scratch.url.path, llama.path + "/../llama"] {
            let result = failure(["adapters", "init", "--text-model", llama.path, "--adapter", layout, "--out", out, "--force"])
            #expect(result?.status == 1 && result?.message.contains("text model") == true, "\(out): \(String(describing: result))")
        }
        #expect(try Data(contentsOf: llama.appendingPathComponent("model.safetensors")) == before)
        #expect(try LlamaConfig.load(from: llama.appendingPathComponent("config.json")).modelType == "llama")
        #expect(scratch.contents == ["llama"])
    }

    @Test("An existing --out is refused without --force and replaced whole with it")
    func existingOut() throws {
        let scratch = try Scratch()
        let out = scratch.url.appendingPathComponent("vision")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: out.appendingPathComponent("notes.txt"))
        // A vision checkpoint needs the text model's tokenizer.json.
        let llama = scratch.url.appendingPathComponent("llama")
        try FileManager.default.copyItem(at: TinyVisionSetup.folder.appendingPathComponent("llama"), to: llama)
        let refused = failure(["adapters", "init", "--text-model", llama.path, "--adapter", layout, "--out", out.path])
        #expect(refused?.message.contains("--force") == true, "\(String(describing: refused))")
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("notes.txt").path))

        try runVLM(["adapters", "init", "--text-model", llama.path, "--adapter", layout, "--out", out.path, "--force"])
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(files.contains("model.safetensors") && files.contains("config.json") && !files.contains("notes.txt"))
        #expect(scratch.contents == ["llama", "vision"], "no temporary folder is left beside the output")
        _ = try MllamaForConditionalGeneration.load(directory: out)
    }

    @Test("A run that fails midway leaves no output folder and no temporaries; stale ones of a killed run are removed")
    func failureLeavesNothing() throws {
        let scratch = try Scratch()
        let llama = scratch.url.appendingPathComponent("llama")
        try copyFixture("llama/gqa2_untied_padded", to: llama)
        // A tokenizer.json that cannot be read as a file: copying it fails after the weights are written.
        try FileManager.default.createDirectory(at: llama.appendingPathComponent("tokenizer.json"), withIntermediateDirectories: true)
        let stale = scratch.url.appendingPathComponent(".vision.tmp-\(try deadPID())-AbCdEf")
        try FileManager.default.createDirectory(at: stale, withIntermediateDirectories: true)
        try Data(repeating: 1, count: 1000).write(to: stale.appendingPathComponent("model.safetensors"))
        let out = scratch.url.appendingPathComponent("vision")
        #expect(failure(["adapters", "init", "--text-model", llama.path, "--adapter", layout, "--out", out.path]) != nil)
        #expect(scratch.contents == ["llama"], "\(scratch.contents)")
    }

    @Test("Unknown keys in an adapter layout are errors naming them; decoding errors name the field")
    func layoutKeys() throws {
        let scratch = try Scratch()
        let text = try String(contentsOfFile: layout, encoding: .utf8)
        let misspelled = scratch.url.appendingPathComponent("bad.yaml")
        try text.replacingOccurrences(of: "initializer_range: 0.02", with: "initializer_rang: 5.0")
            .replacingOccurrences(of: "  patch_size: 14", with: "  patch_size: 14\n  pach_size: 7").write(to: misspelled, atomically: true, encoding: .utf8)
        let unknown = failure(["adapters", "init", "--text-model", llamaFixture.path, "--adapter", misspelled.path, "--out", scratch.path("o")])
        #expect(unknown?.message.contains("'initializer_rang'") == true && unknown?.message.contains("'vision.pach_size'") == true,
                "\(String(describing: unknown))")
        let missing = scratch.url.appendingPathComponent("missing.yaml")
        try "cross_attention:\n  every: 2\n".write(to: missing, atomically: true, encoding: .utf8)
        let message = failure(["adapters", "init", "--text-model", llamaFixture.path, "--adapter", missing.path, "--out", scratch.path("o")])
        #expect(message?.message.contains("missing key 'vision'") == true && message?.message.contains("keyNotFound") == false,
                "\(String(describing: message))")
        // A misspelt placement key is named, not reported as a missing 'every'.
        let placement = scratch.url.appendingPathComponent("placement.yaml")
        try text.replacingOccurrences(of: "  every: 2", with: "  evry: 2").write(to: placement, atomically: true, encoding: .utf8)
        let misspeltPlacement = failure(["adapters", "init", "--text-model", llamaFixture.path, "--adapter", placement.path, "--out", scratch.path("o")])
        #expect(misspeltPlacement?.message.contains("unknown key 'evry'") == true, "\(String(describing: misspeltPlacement))")
        // An image encoder that cannot be built is refused before anything is written.
        let shapes = [("  image_size: 28", "  image_size: 0", "image_size (0)"), ("  max_num_tiles: 4", "  max_num_tiles: 0", "max_num_tiles"),
                      ("  attention_heads: 4", "  attention_heads: 3", "attention_heads (3)"),
                      ("intermediate_layers_indices: [0, 1]", "intermediate_layers_indices: [0, 2]", "holds 2")]
        for (old, new, named) in shapes {
            let file = scratch.url.appendingPathComponent("shape.yaml")
            try text.replacingOccurrences(of: old, with: new).write(to: file, atomically: true, encoding: .utf8)
            let refused = failure(["adapters", "init", "--text-model", llamaFixture.path, "--adapter", file.path, "--out", scratch.path("o")])
            #expect(refused?.status == 1 && refused?.message.contains(named) == true, "\(new): \(String(describing: refused))")
            try FileManager.default.removeItem(at: file)
        }
        try FileManager.default.removeItem(at: placement)
        #expect(scratch.contents == ["bad.yaml", "missing.yaml"])
        for name in try FileManager.default.contentsOfDirectory(atPath: Fixtures.repositoryRoot.appendingPathComponent("adapters").path)
        where name.hasSuffix(".yaml") {
            _ = try loadModelLayout(path: Fixtures.repositoryRoot.appendingPathComponent("adapters/\(name)").path)
        }
    }
}

@Suite("vlm adapters init: the token-stream comparison layouts")
struct TokenStreamAdaptersTests {
    @Test("adapters/world-llava-*.yaml build the token-stream model with the encoder a cross-attention layout of the same vision fields gets")
    func tokenStreamLayouts() throws {
        let scratch = try Scratch()
        let llama = scratch.url.appendingPathComponent("llama")
        try copyFixture("llama/gqa2_untied_padded", to: llama)
        for (file, projector) in [("adapters/world-llava-linear.yaml", "linear"), ("adapters/world-llava-mlp2x.yaml", "mlp2x_gelu")] {
            let path = Fixtures.repositoryRoot.appendingPathComponent(file).path
            var layout = try loadAdapterLayout(path: path)
            try runVLM(["adapters", "init", "--text-model", llama.path, "--adapter", path, "--out", scratch.path(projector), "--seed", "4"])
            let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch.path(projector + "/config.json")))) as! [String: Any]
            #expect(config["model_type"] as? String == "vlmkit_token_stream" && config["projector_type"] as? String == projector)
            let model = try TokenStreamModel.load(directory: URL(fileURLWithPath: scratch.path(projector)))
            #expect(model.imageTokensPerImage == 65)
            layout.architecture = .crossAttention
            layout.crossAttention = .every(1, first: 0)
            try AdapterInitialization.initialize(textModel: llama, layout: layout, output: scratch.url.appendingPathComponent("cross-" + projector), seed: 4)
            let cross = try SafetensorsCheckpoint(path: scratch.path("cross-\(projector)/model.safetensors"))
            let encoder = model.parameters().filter { $0.name.hasPrefix("vision_model.") }
            #expect(encoder.count > 10)
            for (name, tensor) in encoder { #expect(try cross.tensor(name).floats() == tensor.floats(), "\(name)") }
        }
    }
}

