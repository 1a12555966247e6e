import Foundation
import Layers
import Testing
@testable import Training

@Suite("Recipes: stages as data, with errors that name the file, line and field")
struct RecipeTests {
    let directory = URL(fileURLWithPath: "/tmp/recipes")

    func parse(_ yaml: String, overrides: [String] = []) throws -> Recipe {
        try Recipe.parse(yaml: yaml, file: "r.yaml", directory: directory, overrides: overrides)
    }

    static let twoStages = """
        # header
        data_root: data
        defaults:
          micro_batch_size: 2
          learning_rate: 0.001
        stages:
          - name: pretrain
            kind: pretrain
            datasets: [pairs.jsonl, {path: more.jsonl, weight: 3}]
            trainable: [projector]
            steps: 10
          - name: sft
            kind: sft
            datasets:
              - path: chat.json
            trainable: [projector, crossAttentionLayers]
            learning_rate: 0.0002
            schedule: linear
            epochs: 2
        """

    @Test("defaults apply to every stage and a stage's own keys win")
    func defaultsAndStages() throws {
        let recipe = try parse(Self.twoStages)
        #expect(recipe.stages.map(\.name) == ["pretrain", "sft"])
        #expect(recipe.stages.map(\.microBatchSize) == [2, 2])
        #expect(recipe.stages.map(\.learningRate) == [0.001, 0.0002])
        #expect(recipe.stages[0].datasets == [DatasetSpec(path: "pairs.jsonl"), DatasetSpec(path: "more.jsonl", weight: 3)])
        #expect(recipe.stages[1].schedule == .linear)
        #expect(recipe.url(of: recipe.stages[0].datasets[0]).path == "/tmp/recipes/data/pairs.jsonl")
        #expect(recipe.stages[1].totalSteps(trainingSamples: 9) == 9, "2 epochs of 9 samples at 2 per step")
    }

    @Test("--set overrides one stage's key, or every stage's")
    func overrides() throws {
        let recipe = try parse(Self.twoStages, overrides: ["sft.learning_rate=0.5", "seed=7", "pretrain.trainable=[visionModel]"])
        #expect(recipe.stages.map(\.learningRate) == [0.001, 0.5])
        #expect(recipe.stages.map(\.seed) == [7, 7])
        #expect(recipe.stages[0].trainable == ["visionModel"])
        #expect(throws: RecipeError.self) { try parse(Self.twoStages, overrides: ["dpo.seed=1"]) }
        #expect(throws: RecipeError.self) { try parse(Self.twoStages, overrides: ["sft.learning_rat=1"]) }
    }

    @Test("learning-rate multipliers and activation checkpointing are read, and bad values are named")
    func multipliersAndCheckpointing() throws {
        let recipe = try parse(Self.twoStages, overrides: ["sft.learning_rate_multipliers={projector: 10, '**.cross_attn_attn_gate': 30}",
                                                           "activation_checkpointing=true"])
        #expect(recipe.stages[1].learningRateMultipliers == ["projector": 10, "**.cross_attn_attn_gate": 30])
        #expect(recipe.stages[0].learningRateMultipliers.isEmpty)
        #expect(recipe.stages.map(\.activationCheckpointing) == [true, true])
        do {
            _ = try parse(Self.twoStages, overrides: ["sft.learning_rate_multipliers={projector: -1}"])
            Issue.record("a negative factor was accepted")
        } catch let error as RecipeError {
            #expect("\(error)".contains("learning_rate_multipliers.projector"))
        }
        #expect(throws: RecipeError.self) { try parse(Self.twoStages, overrides: ["activation_checkpointing=sometimes"]) }
    }

    @Test("precision: bf16 is read, float32 leaves the settings (and their digest) as without the key, other values name file, line and field")
    func precisionKey() throws {
        let plain = try parse(Self.twoStages)
        let bf16 = try parse(Self.twoStages, overrides: ["sft.precision=bf16"])
        #expect(bf16.stages.map(\.precision) == [nil, .bf16])
        #expect(bf16.stages[1].digest != plain.stages[1].digest)
        let float32 = try parse(Self.twoStages.replacingOccurrences(of: "    schedule: linear", with: "    schedule: linear\n    precision: float32"))
        #expect(float32.stages[1].digest == plain.stages[1].digest)
        let yaml = Self.twoStages.replacingOccurrences(of: "    schedule: linear", with: "    schedule: linear\n    precision: fp16")
        do {
            _ = try parse(yaml)
            Issue.record("precision fp16 was accepted")
        } catch let error as RecipeError {
            #expect(error.line == 19, "\(error)")
            #expect(error.field == "stages[1] 'sft'.precision", "\(error)")
            #expect(error.description.contains("float32, bf16"), "\(error)")
        }
    }

    @Test("an unknown key names the file, its line, the field and the likely key")
    func unknownKey() throws {
        let yaml = Self.twoStages.replacingOccurrences(of: "    learning_rate: 0.0002", with: "    learning_rat: 0.0002")
        do {
            _ = try parse(yaml)
            Issue.record("an unknown key was accepted")
        } catch let error as RecipeError {
            #expect(error.line == 17)
            #expect(error.field == "stages[1] 'sft'.learning_rat")
            #expect(error.description.hasPrefix("r.yaml:17: "))
            #expect(error.description.contains("did you mean 'learning_rate'"))
        }
    }

    @Test("wrong types and invalid values are named before any work starts",
          arguments: [("    steps: 10", "    steps: ten", 11, "steps"),
                      ("    kind: sft", "    kind: rlhf", 13, "kind"),
                      ("    steps: 10", "    steps: -1", nil, "steps"),
                      ("  micro_batch_size: 2", "  micro_batch_size: 0", nil, "micro_batch_size")] as [(String, String, Int?, String)])
    func badValues(original: String, replacement: String, line: Int?, field: String) throws {
        let yaml = Self.twoStages.replacingOccurrences(of: original, with: replacement)
        do {
            _ = try parse(yaml)
            Issue.record("'\(replacement)' was accepted")
        } catch let error as RecipeError {
            if let line { #expect(error.line == line, "\(error)") }
            #expect(error.field?.hasSuffix(field) == true, "\(error)")
        }
    }

    @Test("language_model and the lora_* keys are read; a recipe without them keeps its digest")
    func languageModelKeys() throws {
        let plain = try parse(Self.twoStages)
        #expect(plain.stages.allSatisfy { $0.languageModel == nil && $0.languageModelTraining.mode == .frozen })
        let lora = try parse(Self.twoStages, overrides: ["sft.language_model=lora", "sft.lora_r=16", "sft.lora_alpha=32",
                                                         "sft.lora_dropout=0.05", "sft.lora_target_modules=[q_proj, v_proj]"])
        let training = lora.stages[1].languageModelTraining
        #expect(training == LanguageModelTraining(mode: .lora, lora: LoRAConfiguration(rank: 16, alpha: 32, dropout: 0.05, targetModules: ["q_proj", "v_proj"])))
        #expect(lora.stages[1].trainingGroups == ["projector", "crossAttentionLayers", LanguageModelTraining.adapterGroup])
        #expect(lora.stages[1].digest != plain.stages[1].digest && lora.stages[0].digest == plain.stages[0].digest)
        // PEFT's defaults: r 8, alpha 8, no dropout, the four attention projections.
        let defaults = try parse(Self.twoStages, overrides: ["sft.language_model=lora"]).stages[1].languageModelTraining.lora
        #expect(defaults == LoRAConfiguration(rank: 8, alpha: 8, dropout: 0, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"]))
        let full = try parse(Self.twoStages, overrides: ["sft.language_model=full"])
        #expect(full.stages[1].trainingGroups == ["projector", "crossAttentionLayers", "textModel"])
        // PEFT also accepts target_modules as one comma-separated string.
        let text = try parse(Self.twoStages, overrides: ["sft.language_model=lora", "sft.lora_target_modules=q_proj,o_proj"])
        #expect(text.stages[1].languageModelTraining.lora.targetModules == ["q_proj", "o_proj"])
    }

    @Test("bad language-model keys name the file, line and field",
          arguments: [("language_model: partial", "language_model", "frozen, full, lora"),
                      ("lora_r: 0", "lora_r", "≥ 1"),
                      ("lora_alpha: -2", "lora_alpha", "positive"),
                      ("lora_dropout: 1.5", "lora_dropout", "[0, 1)"),
                      ("lora_target_modules: [q_proj, qkv]", "lora_target_modules", "'qkv' is not a linear layer")])
    func badLanguageModelKeys(line: String, field: String, message: String) throws {
        let yaml = Self.twoStages.replacingOccurrences(of: "    schedule: linear", with: "    schedule: linear\n    \(line)")
        do {
            _ = try parse(yaml)
            Issue.record("'\(line)' was accepted")
        } catch let error as RecipeError {
            #expect(error.line == 19, "\(error)")
            #expect(error.field == "stages[1] 'sft'.\(field)", "\(error)")
            #expect(error.description.hasPrefix("r.yaml:19: ") && error.description.contains(message), "\(error)")
        }
    }

    @Test("LoRA with textModel in trainable, or on a reward stage, is refused naming the stage")
    func languageModelConflicts() throws {
        let yaml = Self.twoStages.replacingOccurrences(of: "    trainable: [projector, crossAttentionLayers]",
                                                       with: "    trainable: [projector, textModel]\n    language_model: lora")
        #expect { try parse(yaml) } throws: { error in
            let error = error as! RecipeError
            return error.field == "stages[1] 'sft'.trainable" && error.line == 12 && error.reason.contains("language_model: full")
        }
    }

    @Test("the settings digest changes with any setting and only then")
    func digest() throws {
        let a = try parse(Self.twoStages), b = try parse(Self.twoStages)
        #expect(a.stages[0].digest == b.stages[0].digest)
        let c = try parse(Self.twoStages, overrides: ["pretrain.steps=11"])
        #expect(a.stages[0].digest != c.stages[0].digest)
        #expect(a.stages[1].digest == c.stages[1].digest)
    }
}
