import Checkpoint
import Foundation
import Media
import Models
import Processing
import Testing
import TensorCore
import Tokenization
import Training
import _TestSupport
@testable import vlm

/// LLaVA proper on the tests' tiny world Llama: a 2-layer CLIP tower of width 16 reading 32-pixel
/// images in 8-pixel patches (16 image tokens per image), the two-layer projector.
private let tinyLlavaLayout = """
    architecture: llava
    vision:
      hidden_size: 16
      intermediate_size: 32
      num_hidden_layers: 2
      num_attention_heads: 2
      image_size: 32
      patch_size: 8
    projector: mlp2x
    vision_feature_layer: -2
    initializer_range: 0.2
    """

/// LLaVA's two stages, tiny: 3 caption steps training the projector, then 3 question steps training
/// the projector and the language model (`language_model: full`), evaluated on a few held-out questions.
private let twoStageRecipe = """
    defaults:
      micro_batch_size: 4
      max_length: 200
      learning_rate: 0.003
      weight_decay: 0.0
      checkpoint_every: 10
      seed: 1
    stages:
      - name: projector
        kind: pretrain
        trainable: [projector]
        datasets: [pretrain-hq.jsonl]
        steps: 3
      - name: instructions
        kind: sft
        trainable: [projector]
        language_model: full
        datasets: [qa-train.jsonl]
        eval_datasets: [qa-heldout.jsonl]
        eval_samples: 8
        eval_max_new_tokens: 4
        steps: 3
    """

/// Every tensor of a model folder's weights, by name.
private func weights(_ folder: URL) throws -> [String: [Float]] {
    let checkpoint = try SafetensorsCheckpoint(path: try LlamaForCausalLM.weightsPath(in: folder))
    return try Dictionary(uniqueKeysWithValues: checkpoint.names.map { ($0, try checkpoint.tensor($0).floats()) })
}

@Suite("vlm adapters init and vlm train with LLaVA proper (CLIP tower, projector, Llama)", .serialized)
struct LlavaTrainingTests {
    @Test("adapters init builds llava-hf's layout on the Llama: its weights unchanged, <image> one row past them, CLIP's processor config")
    func initialization() throws {
        let scratch = try Scratch()
        let layout = scratch.path("llava.yaml")
        try tinyLlavaLayout.write(toFile: layout, atomically: true, encoding: .utf8)
        let llamaFolder = TinyVisionSetup.folder.appendingPathComponent("llama")
        try runVLM(["adapters", "init", "--text-model", llamaFolder.path, "--adapter", layout, "--out", scratch.path("llava")])
        let folder = URL(fileURLWithPath: scratch.path("llava"))
        let model = try LlavaForConditionalGeneration.load(directory: folder)
        #expect(model.config.imageTokenIndex == 512 && model.config.textConfig.vocabSize == 513 && model.imageTokensPerImage == 16)
        let llama = try weights(llamaFolder), llava = try weights(folder)
        #expect(Set(llava.keys.filter { $0.hasPrefix("vision_tower.vision_model.") }).count > 10)
        #expect(llava.keys.contains("multi_modal_projector.linear_2.weight"))
        for (name, values) in llama where !name.hasSuffix("embed_tokens.weight") && name != "lm_head.weight" {
            #expect(llava["language_model." + name] == values, "\(name)")
        }
        let table = llama["model.embed_tokens.weight"]!, d = table.count / 512
        let resized = llava["language_model.model.embed_tokens.weight"]!
        #expect(Array(resized[0 ..< 512 * d]) == table)
        let mean = (0..<d).map { column in (0..<512).map { Double(table[$0 * d + column]) }.reduce(0, +) / 512 }
        #expect(zip(resized[512 * d ..< 513 * d], mean).allSatisfy { abs(Double($0) - $1) < 1e-6 })
        #expect(try loadCLIPImageProcessor(directory: folder)?.config.doPad == true)
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent(file).path), "\(file)")
        }
        // A layout mistake names the field.
        try (tinyLlavaLayout + "\nprojektor: linear").write(toFile: layout, atomically: true, encoding: .utf8)
        let unknown = failure(["adapters", "init", "--text-model", llamaFolder.path, "--adapter", layout, "--out", scratch.path("other")])
        #expect(unknown?.message.contains("unknown key 'projektor'") == true, "\(String(describing: unknown))")
        try tinyLlavaLayout.replacingOccurrences(of: "vision_feature_layer: -2", with: "vision_feature_layer: -9")
            .write(toFile: layout, atomically: true, encoding: .utf8)
        let badLayer = failure(["adapters", "init", "--text-model", llamaFolder.path, "--adapter", layout, "--out", scratch.path("other")])
        #expect(badLayer?.message.contains("vision_feature_layer [-9]") == true, "\(String(describing: badLayer))")
    }

    @Test("the two stages: stage 1 changes only the projector, stage 2 the projector and the language model; the folders reload with the trained model's evaluation")
    func twoStages() throws {
        let scratch = try Scratch()
        let layout = scratch.path("llava.yaml"), recipe = scratch.path("recipe.yaml")
        try tinyLlavaLayout.write(toFile: layout, atomically: true, encoding: .utf8)
        try twoStageRecipe.write(toFile: recipe, atomically: true, encoding: .utf8)
        let base = scratch.url.appendingPathComponent("base-llava"), run = scratch.url.appendingPathComponent("run")
        try runVLM(["adapters", "init", "--text-model", TinyVisionSetup.folder.appendingPathComponent("llama").path, "--adapter", layout,
                    "--out", base.path, "--seed", "2"])
        try runVLM(["train", recipe, "--base", base.path, "--out", run.path, "--data-root", TinyVisionSetup.world.path])

        let stage1 = run.appendingPathComponent("projector/model"), stage2 = run.appendingPathComponent("instructions/model")
        let before = try weights(base), after1 = try weights(stage1), after2 = try weights(stage2)
        #expect(Set(before.keys) == Set(after1.keys) && Set(before.keys) == Set(after2.keys), "llava-hf's names throughout")
        for name in before.keys.sorted() {
            let projector = name.hasPrefix("multi_modal_projector."), language = name.hasPrefix("language_model.")
            #expect((after1[name] != before[name]) == projector, "stage 1: \(name)")
            if language && name.contains("embed_tokens") {
                // The embedding table changes where text tokens were read; <image>'s row is never read (its
                // positions hold image features), so it keeps its start.
                #expect(after2[name] != after1[name], "stage 2: \(name)")
                let d = before[name]!.count / 513
                #expect(Array(after2[name]![512 * d ..< 513 * d]) == Array(before[name]![512 * d ..< 513 * d]))
            } else {
                #expect((after2[name] != after1[name]) == (projector || language), "stage 2: \(name)")
            }
        }
        let summary1 = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("projector/summary.json"))) as! [String: Any]
        #expect(summary1["textOnlyLogitsUnchanged"] as? Bool == true, "stage 1 keeps the language model")

        // The written folder is the trained model: its held-out loss, computed anew from the files,
        // is the one the run measured on the model in memory after its last step.
        let summary2 = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("instructions/summary.json"))) as! [String: Any]
        let evaluation = summary2["evaluation"] as? [String: Any]
        let measured = try #require(evaluation?["loss"] as? Double)
        let reloaded = try evaluateModel(directory: stage2, datasets: [TinyVisionSetup.world.appendingPathComponent("qa-heldout.jsonl")],
                                         maxSamples: 8, maxNewTokens: 4, maxLength: 200)
        #expect(abs(reloaded["loss"]! - measured) <= 1e-9 * abs(measured), "\(reloaded["loss"]!) against \(measured)")
        #expect(reloaded["exact_match"] == evaluation?["exact_match"] as? Double)
        #expect(reloaded["loss_blank_images"] == evaluation?["loss_blank_images"] as? Double)

        // Saved again and reloaded: the same tensors and, with images, the same logits bit for bit.
        let model = try LlavaForConditionalGeneration.load(directory: stage2)
        let again = scratch.url.appendingPathComponent("again")
        try model.save(to: again)
        let copy = try LlavaForConditionalGeneration.load(directory: again)
        let clip = try #require(try loadCLIPImageProcessor(directory: stage2))
        let pixels = try clip.preprocess([try loadImage(path: Fixtures.url("mllama/processor/coffee_crop_120x50.png").path)])
        let ids = Tensor(indices: [3, 4] + Array(repeating: 512, count: 16) + [5, 6, 7], shape: [1, 21])
        let logits = withNoGrad { model(inputIds: ids, pixelValues: pixels).floats() }
        #expect(logits == withNoGrad { copy(inputIds: ids, pixelValues: pixels).floats() })
        #expect(try weights(again) == after2)

        // vlm generate --chat on the trained folder answers as the library does for the question
        // encoded as vlm train encodes it (the Llama 3 chat format, the image as the user's first part).
        let tokenizer = try Tokenizer(checkpointFile: stage2.appendingPathComponent("tokenizer.json"), extraSpecialTokens: ["<|image|>": 512])
        let chatIDs = try Llama3ChatFormat(tokenizer: tokenizer).encode(
            [ChatMessage(role: .user, parts: [.image, .text("What colour is the square?")])], addGenerationPrompt: true).ids
        let generation = try GenerationConfig.load(from: stage2.appendingPathComponent("generation_config.json"))
        let stops = Set((generation.eosTokenIds ?? []) + [try #require(tokenizer.specialTokenID("<|eot_id|>"))])
        let tokens = generate(with: model.conditioned(pixelValues: pixels), prompts: [expandImageTokens(chatIDs, imageTokenID: 512, count: 16)],
                              maxNewTokens: 6, stopTokens: stops)[0].filter { !stops.contains($0) }
        let text = try generatedText(["--model", stage2.path, "--chat", "--image", Fixtures.url("mllama/processor/coffee_crop_120x50.png").path,
                                      "--prompt", "What colour is the square?", "--max-tokens", "6"])
        #expect(text == tokenizer.decode(tokens) + "\n", "\(tokens)")
        let chatInputs = scratch.path("chat-inputs.safetensors")
        try runVLM(["preprocess", "--model", stage2.path, "--chat", "--image", Fixtures.url("mllama/processor/coffee_crop_120x50.png").path,
                    "--prompt", "What colour is the square?", "--out", chatInputs])
        let chatFile = try SafetensorsFile(path: chatInputs)
        #expect(try chatFile.tensor("input_ids").integers() == expandImageTokens(chatIDs, imageTokenID: 512, count: 16))
        #expect(try chatFile.tensor("pixel_values").floats() == pixels.floats())
    }
}

extension LlavaTrainingTests {
    @Test("pipelines/llava-two-stage.yaml with language_model: lora: PEFT's LLaVA files in the merged model's peft/, which give the adapted model's logits")
    func loraStageTwo() throws {
        let scratch = try Scratch()
        let layout = scratch.path("llava.yaml")
        try tinyLlavaLayout.write(toFile: layout, atomically: true, encoding: .utf8)
        let base = scratch.url.appendingPathComponent("base-llava"), run = scratch.url.appendingPathComponent("run")
        try runVLM(["adapters", "init", "--text-model", TinyVisionSetup.folder.appendingPathComponent("llama").path, "--adapter", layout,
                    "--out", base.path, "--seed", "2"])
        try runVLM(["train", repositoryFile("pipelines/llava-two-stage.yaml").path, "--base", base.path, "--out", run.path,
                    "--data-root", TinyVisionSetup.world.path, "--set", "micro_batch_size=4", "--set", "max_length=200",
                    "--set", "projector.steps=2", "--set", "instructions.steps=3", "--set", "instructions.datasets=[qa-train.jsonl]",
                    "--set", "instructions.eval_samples=4", "--set", "instructions.learning_rate=0.01",
                    "--set", "instructions.language_model=lora", "--set", "instructions.lora_r=2", "--set", "instructions.lora_alpha=4"])

        let stage1 = run.appendingPathComponent("projector/model"), stage2 = run.appendingPathComponent("instructions/model")
        let peft = stage2.appendingPathComponent(PEFTAdapter.stageSubfolder)
        #expect(!FileManager.default.fileExists(atPath: stage2.appendingPathComponent(PEFTAdapter.configFile).path),
                "beside config.json, transformers would load base + adapter instead of the merged model")
        let config = try JSONDecoder().decode(PEFTAdapterConfig.self, from: Data(contentsOf: peft.appendingPathComponent(PEFTAdapter.configFile)))
        #expect(config.baseModelNameOrPath == stage1.path, "PEFT wraps the stage's input LLaVA")
        #expect(config.targetModules == .pattern(#"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj)"#))
        let adapter = try SafetensorsFile(path: peft.appendingPathComponent(PEFTAdapter.weightsFile).path)
        let layers = try LlavaForConditionalGeneration.load(directory: stage1).config.textConfig.numHiddenLayers
        // The LoRA pairs of q/k/v/o in every layer, and the projector stage 2 trained in full (PEFT's modules_to_save).
        #expect(config.modulesToSave == ["model.multi_modal_projector"])
        let projectorKeys = adapter.names.filter { $0.hasPrefix("base_model.model.model.multi_modal_projector.") }
        #expect(Set(projectorKeys) == Set(["linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"].map { "base_model.model.model.multi_modal_projector." + $0 }))
        #expect(adapter.names.count - projectorKeys.count == layers * 4 * 2)
        #expect(adapter.names.filter { !projectorKeys.contains($0) }.allSatisfy { $0.hasPrefix("base_model.model.model.language_model.layers.") })

        // The merged model changed only the projector and the adapted layers of the language model.
        let after1 = try weights(stage1), after2 = try weights(stage2)
        #expect(Set(after1.keys) == Set(after2.keys), "llava-hf's names, no adapter tensors")
        for name in after1.keys.sorted() {
            let adapted = name.hasPrefix("language_model.model.layers.") && ["q_proj", "k_proj", "v_proj", "o_proj"].contains { name.hasSuffix(".\($0).weight") }
            #expect((after2[name] != after1[name]) == (adapted || name.hasPrefix("multi_modal_projector.")), "\(name)")
        }

        // Stage 1's model with the written adapter (unmerged, and stage 2's projector) gives the merged folder's logits.
        let unmerged = try LlavaForConditionalGeneration.load(directory: stage1)
        try PEFTAdapter.load(directory: peft, into: unmerged)
        let merged = try LlavaForConditionalGeneration.load(directory: stage2)
        let clip = try #require(try loadCLIPImageProcessor(directory: stage2))
        let pixels = try clip.preprocess([try loadImage(path: Fixtures.url("mllama/processor/coffee_crop_120x50.png").path)])
        let ids = Tensor(indices: [3, 4] + Array(repeating: 512, count: 16) + [5, 6, 7], shape: [1, 21])
        let a = withNoGrad { unmerged(inputIds: ids, pixelValues: pixels).doubles() }, b = withNoGrad { merged(inputIds: ids, pixelValues: pixels).doubles() }
        let (relative, maxAbs) = errors(a, b)
        #expect(relative <= 1e-5 && maxAbs <= 1e-4, "relative L2 \(relative), max abs \(maxAbs)")
        let start = withNoGrad { try! LlavaForConditionalGeneration.load(directory: stage1)(inputIds: ids, pixelValues: pixels).doubles() }
        #expect(errors(start, b).maxAbs > 1e-4, "the adapter moved the logits")

        // lora with languageModel in trainable is a contradiction the recipe check names.
        let both = failure(["train", repositoryFile("pipelines/llava-two-stage.yaml").path, "--base", base.path, "--out", scratch.path("other"),
                            "--data-root", TinyVisionSetup.world.path, "--set", "instructions.language_model=lora",
                            "--set", "instructions.trainable=[projector, languageModel]"])
        #expect(both?.message.contains("languageModel trains the whole text model") == true, "\(String(describing: both))")
    }
}

@Suite("A LLaVA checkpoint trained by vlm train computes transformers' logits")
struct LlavaTrainedFixtureTests {
    /// Tests/Fixtures/llava-trained: a tiny LLaVA after LLaVA's two stages in `vlm train`, loaded by
    /// transformers 5.24 with no missing, unexpected or mismatched keys, and its logits there for two
    /// world images (Scripts/fixtures/check_vlmkit_llava_in_transformers.py --write-fixture).
    @Test("vlm forward on the trained checkpoint gives transformers' logits")
    func trainedCheckpointMatchesTransformers() throws {
        let fixture = Fixtures.url("llava-trained")
        let scratch = try Scratch()
        let out = scratch.path("logits.safetensors")
        try runVLM(["forward", "--model", fixture.path, "--inputs", fixture.appendingPathComponent("inputs.safetensors").path, "--out", out])
        let logits = try SafetensorsFile(path: out).tensor("logits")
        let expected = try SafetensorsFile(path: fixture.appendingPathComponent("logits.safetensors").path).tensor("logits")
        #expect(logits.shape == expected.shape)
        let (relative, maxAbs) = errors(logits.doubles(), expected.doubles())
        #expect(relative <= 1e-5 && maxAbs <= 1e-4, "relative L2 \(relative), max abs \(maxAbs)")
        let config = try LlavaConfig.load(from: fixture.appendingPathComponent("config.json"))
        #expect(config.imageTokenIndex == config.textConfig.vocabSize - 1, "<image> is the one token added to the Llama")
    }
}
