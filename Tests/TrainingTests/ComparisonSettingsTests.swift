import Foundation
import Models
import Testing
@testable import Training

@Suite("The compare: section and each design's recipe")
struct ComparisonSettingsTests {
    static let recipe = """
        defaults:
          trainable: [visionModel, projector, crossAttentionLayers, extraEmbeddingRows]
          learning_rate_multipliers: {projector: 10, crossAttentionLayers: 3}
        stages:
          - {name: noisy, kind: pretrain, datasets: [a.jsonl], steps: 5}
          - {name: hq, kind: pretrain, datasets: [b.jsonl], steps: 5}
          - {name: sft, kind: sft, datasets: [c.jsonl], input_stage: noisy, steps: 7, log_every: 5}
        compare:
          archs: [cross-attention, llava-mlp2x]
          stages: [hq, sft]
          seeds: 3
          set: [sft.steps=4]
        """

    func parse(_ yaml: String) throws -> Recipe {
        try Recipe.parse(yaml: yaml, file: "r.yaml", directory: URL(fileURLWithPath: "/tmp/recipes"))
    }

    @Test("the section is read; each design gets the selected stages, the overrides, the seed, and only the groups it has")
    func designRecipes() throws {
        let recipe = try parse(Self.recipe)
        let settings = try #require(recipe.comparison)
        #expect(settings == ComparisonSettings(archs: [.crossAttention, .llavaMLP2x], stages: ["hq", "sft"], seeds: 3, overrides: ["sft.steps=4"]))
        let cross = try recipe.forComparison(design: .crossAttention, stages: settings.stages, overrides: settings.overrides, seed: 9)
        let llava = try recipe.forComparison(design: .llavaMLP2x, stages: settings.stages, overrides: settings.overrides, seed: 9)
        for design in [cross, llava] {
            #expect(design.stages.map(\.name) == ["hq", "sft"] && design.comparison == nil)
            #expect(design.stages.map(\.steps) == [5, 4] && design.stages.allSatisfy { $0.seed == 9 && $0.logEvery == 1 })
            #expect(design.stages[1].inputStage == nil, "its input stage was left out: it starts from the previous one")
        }
        #expect(cross.stages[0].trainable == ["visionModel", "projector", "crossAttentionLayers", "extraEmbeddingRows"])
        #expect(llava.stages[0].trainable == ["visionModel", "projector"])
        #expect(llava.stages[0].learningRateMultipliers == ["projector": 10])
        #expect(cross.stages[0].learningRateMultipliers == ["projector": 10, "crossAttentionLayers": 3])
        // The data, steps and schedule are the same for both: only the groups differ.
        var a = cross.stages[1], b = llava.stages[1]
        (a.trainable, a.learningRateMultipliers, b.trainable, b.learningRateMultipliers) = ([], [:], [], [:])
        #expect(a == b)
    }

    @Test("an override for a stage the comparison leaves out is accepted and dropped; an unknown stage is still refused")
    func overridesOfLeftOutStages() throws {
        let recipe = try parse(Self.recipe)
        let design = try recipe.forComparison(design: .crossAttention, stages: ["hq", "sft"], overrides: ["noisy.steps=9", "sft.steps=4"], seed: 0)
        #expect(design.stages.map(\.name) == ["hq", "sft"] && design.stages.map(\.steps) == [5, 4])
        #expect(throws: RecipeError.self) {
            try recipe.forComparison(design: .crossAttention, stages: ["hq", "sft"], overrides: ["encoder.steps=9"], seed: 0)
        }
    }

    @Test("mistakes in the section are named by field", arguments: [
        ("compare: {archs: [perceiver]}", "compare.archs"),
        ("compare: {stages: [nope]}", "compare.stages"),
        ("compare: {seeds: 0}", "compare.seeds"),
        ("compare: {sedes: 2}", "compare.sedes"),
    ])
    func mistakes(section: String, field: String) throws {
        let yaml = "stages:\n  - {name: hq, kind: pretrain, datasets: [b.jsonl], trainable: [projector], steps: 5}\n" + section
        #expect { try parse(yaml) } throws: { "\($0)".contains(field) }
    }

    @Test("a design left with nothing to train is refused")
    func nothingToTrain() throws {
        let recipe = try parse("stages:\n  - {name: hq, kind: pretrain, datasets: [b.jsonl], trainable: [crossAttentionLayers], steps: 5}\n")
        #expect { try recipe.forComparison(design: .llavaLinear, stages: [], overrides: [], seed: 0) } throws: {
            "\($0)".contains("hq.trainable") && "\($0)".contains("nothing left to train")
        }
    }

    @Test("language_model [frozen, lora] makes an arm per design and mode; the mode goes to the last stage unless lora_stages names others")
    func languageModelGrid() throws {
        let yaml = Self.recipe.replacingOccurrences(of: "  seeds: 3", with: "  seeds: 3\n  language_model: [frozen, lora]")
        let recipe = try parse(yaml)
        let settings = try #require(recipe.comparison)
        #expect(settings.languageModels == [.frozen, .lora] && settings.languageModelStages.isEmpty)
        #expect(settings.arms.map(\.description) == ["cross-attention", "cross-attention + LoRA LM", "llava-mlp2x", "llava-mlp2x + LoRA LM"])
        #expect(settings.arms.map(\.folderName) == ["cross-attention", "cross-attention-lora", "llava-mlp2x", "llava-mlp2x-lora"])
        let lora = try recipe.forComparison(design: .llavaMLP2x, stages: settings.stages, overrides: ["sft.lora_r=2"], seed: 1, languageModel: .lora)
        #expect(lora.stages.map(\.languageModelTraining.mode) == [.frozen, .lora])
        #expect(lora.stages[1].languageModelTraining.lora.rank == 2)
        #expect(lora.stages[1].trainingGroups == ["visionModel", "projector", LanguageModelTraining.adapterGroup])
        let frozen = try recipe.forComparison(design: .llavaMLP2x, stages: settings.stages, overrides: [], seed: 1, languageModel: .frozen)
        #expect(frozen.stages.allSatisfy { $0.languageModel == nil }, "the frozen arm's recipe is the plain comparison's (same digests)")
        let both = try recipe.forComparison(design: .crossAttention, stages: settings.stages, overrides: [], seed: 1, languageModel: .lora,
                                            languageModelStages: ["hq", "sft"])
        #expect(both.stages.map(\.languageModelTraining.mode) == [.lora, .lora])
        #expect { try recipe.forComparison(design: .crossAttention, stages: settings.stages, overrides: [], seed: 1, languageModel: .lora,
                                           languageModelStages: ["noisy"]) } throws: { error in
            (error as? RecipeError)?.field == "compare.lora_stages"
        }
        #expect { try parse(Self.recipe.replacingOccurrences(of: "  seeds: 3", with: "  seeds: 3\n  language_model: [frozen, adapters]")) } throws: { error in
            let error = error as! RecipeError
            return error.field == "compare.language_model" && error.line == 12 && error.reason.contains("frozen, full, lora")
        }
    }
}
