import Checkpoint
import Foundation
import Models
import TensorCore
import Testing
import Training
import _TestSupport
@testable import vlm

@Suite("vlm compare: the fusion designs on the same data, scaled down", .serialized)
struct CompareCommandTests {
    /// Three designs × two seeds, 3 caption + 3 question steps each, on the tiny world and a
    /// 2-layer Llama of width 32 (TinyVisionSetup).
    static func recipe(in scratch: Scratch) throws -> String {
        let text = """
            defaults: {trainable: [visionModel, projector, crossAttentionLayers, extraEmbeddingRows], micro_batch_size: 4,
                       max_length: 400, learning_rate: 0.003, checkpoint_every: 100}
            stages:
              - {name: pretrain, kind: pretrain, datasets: [pretrain-hq.jsonl], steps: 3}
              - {name: sft, kind: sft, datasets: [qa-train.jsonl], eval_datasets: [qa-heldout.jsonl], eval_samples: 8,
                 eval_max_new_tokens: 4, steps: 3}
            compare: {archs: [cross-attention, llava-linear, llava-mlp2x], seeds: 2}
            """
        try text.write(toFile: scratch.path("compare.yaml"), atomically: true, encoding: .utf8)
        return scratch.path("compare.yaml")
    }

    @Test("each design trains the same steps and images; the JSON's statistics are its runs'; frozen text models do not drift; a rerun reuses every run")
    func tinyComparison() throws {
        let scratch = try Scratch()
        let out = scratch.path("compare")
        let arguments = ["compare", try Self.recipe(in: scratch), "--base", TinyVisionSetup.folder.appendingPathComponent("llama").path,
                         "--adapter", repositoryFile("adapters/world.yaml").path, "--out", out, "--data-root", TinyVisionSetup.world.path]
        try runVLM(arguments)
        // Read with JSONDecoder: JSONSerialization's parser may round the last digit.
        struct File: Decodable {
            struct Figure: Decodable { var mean: Double, spread: Double, values: [Double] }
            struct Design: Decodable { var design: String, figures: [String: Figure] }
            var seeds: Int, designs: [Design], runs: [ComparisonRun]
        }
        let json = try JSONDecoder().decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/comparison.json")))
        #expect(json.designs.map(\.design) == ["cross-attention", "llava-linear", "llava-mlp2x"])
        #expect(json.runs.count == 6 && json.seeds == 2)

        let report = try ComparisonReport.load(from: URL(fileURLWithPath: out + "/comparison.json"))
        let markdown = try String(contentsOfFile: out + "/comparison.md", encoding: .utf8)
        for entry in json.designs {
            let design = AdapterLayout.Architecture(rawValue: entry.design)!
            let mine = report.runs.filter { $0.design == design }
            #expect(mine.map(\.seed).sorted() == [0, 1])
            // Every figure's mean and spread are those of the runs' values.
            let figures = entry.figures
            #expect(figures.count > 20)
            for (key, figure) in figures {
                let values = mine.compactMap { $0.figures[key] }
                #expect(figure.values == values, "\(design) \(key)")
                let mean = values.reduce(0, +) / Double(values.count)
                #expect(abs(figure.mean - mean) <= 1e-12 * max(1, abs(mean)), "\(design) \(key)")
                let squares: Double = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +)
                let spread: Double = (squares / Double(values.count - 1)).squareRoot()
                #expect(abs(figure.spread - spread) <= 1e-9 * max(1, spread), "\(design) \(key)")
            }
            for run in mine {
                #expect(run.steps == 6)
                #expect(run.textDrift.klDivergence == 0, "the language model is frozen: no drift, measured")
                #expect(run.textDrift.perplexity == run.textDrift.basePerplexity)
                #expect((0...1).contains(run.evaluation["exact_match"]!) && run.evaluation.keys.contains { $0.hasPrefix("exact_match/") })
                #expect(run.generation.map(\.images) == [1, 2, 4] && run.generation.allSatisfy { $0.prefillSeconds > 0 && $0.decodeTokensPerSecond > 0 })
                // Each extra image adds one <|image|> for cross-attention, 65 positions (one 64-pixel tile of 8-pixel patches + class) to the stream.
                let added = run.generation[1].promptTokens - run.generation[0].promptTokens
                #expect(added == (design == .crossAttention ? 1 : 65) && run.positionsPerImage == added)
                #expect(run.peakMemoryMB > 0)
            }
            let exactMatch = figures["exact_match"]!.mean
            #expect(markdown.contains(String(format: "%.1f %%", 100 * exactMatch)))
        }
        // Same data and budget: every design saw the same images in the same number of steps.
        for seed in [UInt64(0), 1] {
            let seen = report.runs.filter { $0.seed == seed }.map(\.trainingImages)
            #expect(Set(seen).count == 1 && seen[0] > 0)
        }
        // The projectors differ by LLaVA-1.5's second layer (D × D + D for the Llama's width 32).
        let parameters = Dictionary(report.runs.map { ($0.design, $0.trainableParameters) }, uniquingKeysWith: { a, _ in a })
        #expect(parameters[.llavaMLP2x]! - parameters[.llavaLinear]! == 32 * 32 + 32)
        // The same seed gives every design the same initial encoder.
        let cross = try SafetensorsCheckpoint(path: out + "/cross-attention/seed-1/init/model.safetensors")
        let linear = try SafetensorsCheckpoint(path: out + "/llava-linear/seed-1/init/model.safetensors")
        let encoder = linear.names.filter { $0.hasPrefix("vision_model.") }
        #expect(!encoder.isEmpty)
        for name in encoder { #expect(try cross.tensor(name).floats() == linear.tensor(name).floats(), "\(name)") }

        let result = out + "/llava-mlp2x/seed-0/result.json"
        let modified = try FileManager.default.attributesOfItem(atPath: result)[.modificationDate] as! Date
        try runVLM(arguments)
        #expect(try FileManager.default.attributesOfItem(atPath: result)[.modificationDate] as! Date == modified)
        #expect(try ComparisonReport.load(from: URL(fileURLWithPath: out + "/comparison.json")).runs.map(\.trainableParameters)
                == report.runs.map(\.trainableParameters))
    }

    /// Idefics2's grid on the tiny setting: cross-attention and llava-linear, each with the
    /// language model frozen and with LoRA in the sft stage, one seed.
    @Test("--language-model frozen,lora gives a LoRA column per design: text drift measured above 0, adapters counted, caption accuracy per column")
    func languageModelGrid() throws {
        let scratch = try Scratch()
        let out = scratch.path("grid")
        try runVLM(["compare", try Self.recipe(in: scratch), "--base", TinyVisionSetup.folder.appendingPathComponent("llama").path,
                    "--adapter", repositoryFile("adapters/world.yaml").path, "--out", out, "--data-root", TinyVisionSetup.world.path,
                    "--archs", "cross-attention,llava-linear", "--seeds", "1", "--language-model", "frozen,lora", "--caption-samples", "8",
                    "--set", "sft.lora_r=4"])
        let report = try ComparisonReport.load(from: URL(fileURLWithPath: out + "/comparison.json"))
        #expect(report.arms.map(\.description) == ["cross-attention", "cross-attention + LoRA LM", "llava-linear", "llava-linear + LoRA LM"])
        let markdown = try String(contentsOfFile: out + "/comparison.md", encoding: .utf8)
        #expect(markdown.contains("| cross-attention | cross-attention + LoRA LM | llava-linear | llava-linear + LoRA LM |"))
        #expect(markdown.contains("caption accuracy"))
        for design in [AdapterLayout.Architecture.crossAttention, .llavaLinear] {
            let frozen = report.runs.first { $0.arm == ComparisonArm(design: design) }!
            let lora = report.runs.first { $0.arm == ComparisonArm(design: design, languageModel: .lora) }!
            #expect(frozen.textDrift.klDivergence == 0 && lora.textDrift.klDivergence > 0, "\(design): LoRA moves the text path, measured")
            #expect(lora.textDrift.perplexity != lora.textDrift.basePerplexity)
            // LoRA r 4 on q/k/v/o of the Llama's 2 layers (width 32, k and v 16): 1,792 more trainable parameters.
            #expect(lora.trainableParameters - frozen.trainableParameters == 1792, "\(design)")
            #expect(lora.steps == frozen.steps && lora.trainingImages == frozen.trainingImages)
            for run in [frozen, lora] {
                #expect(run.captionAccuracy.map { (0...1).contains($0) } == true && run.captionRecall != nil)
                #expect(report.statistics(of: run.arm)["caption_accuracy"]?.values.count == 1)
            }
            // The LoRA stage wrote PEFT's files for the base Llama: its 2 layers, whatever the design's layer numbering.
            let adapterFile = out + "/\(ComparisonArm(design: design, languageModel: .lora).folderName)/seed-0/run/sft/model/peft/adapter_model.safetensors"
            let names = try SafetensorsFile(path: adapterFile).names
            #expect(names.count == 16 && names.allSatisfy { $0.hasPrefix("base_model.model.model.layers.0.") || $0.hasPrefix("base_model.model.model.layers.1.") },
                    "\(design): \(names.sorted())")
            // Those files on the base Llama give the saved (merged) model's text-only logits: the
            // layer numbers map back right (Mllama's cross-attention layers sit between the Llama's).
            let folder = URL(fileURLWithPath: adapterFile).deletingLastPathComponent()
            let llama = try LlamaForCausalLM.load(directory: TinyVisionSetup.folder.appendingPathComponent("llama"))
            try PEFTAdapter.load(directory: folder, into: llama)
            let probe = Tensor(indices: [1, 40, 41, 42, 43, 44, 45, 46], shape: [1, 8])
            let adapted = withNoGrad { llama(probe) }.doubles()
            let savedModel = try LoadedModel.load(directory: folder.deletingLastPathComponent()).model
            let saved = withNoGrad { savedModel.logits(ModelInputs(inputIDs: probe)) }.doubles()
            #expect(errors(saved, adapted).relativeL2 <= 1e-5, "\(design)")
        }
    }

    @Test("a stage the token-stream model cannot train is named before any work")
    func refusesPostTraining() throws {
        let scratch = try Scratch()
        try """
            defaults: {trainable: [visionModel, projector, crossAttentionLayers, rewardHead]}
            stages:
              - {name: reward, kind: reward, datasets: [preferences.jsonl], steps: 1}
            """.write(toFile: scratch.path("r.yaml"), atomically: true, encoding: .utf8)
        let result = failure(["compare", scratch.path("r.yaml"), "--archs", "llava-linear", "--base", TinyVisionSetup.folder.appendingPathComponent("llama").path,
                              "--adapter", repositoryFile("adapters/world.yaml").path, "--out", scratch.path("out"),
                              "--data-root", TinyVisionSetup.world.path])
        #expect(result?.message.contains("llava-linear trains pretrain and sft stages only") == true, "\(result?.message ?? "succeeded")")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("out/llava-linear")))
    }
}
