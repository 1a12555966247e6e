import Foundation
import Models
import Yams

/// A recipe's `compare:` section: which fusion designs `vlm compare` (and `vlm run` after its
/// stages) trains on the same data, steps and encoder, over which of the recipe's stages and how
/// many seeds.
///
/// ```yaml
/// compare:
///   archs: [cross-attention, llava-linear, llava-mlp2x]
///   stages: [pretrain-hq, sft]      # default: every stage
///   seeds: 1
///   set: [sft.steps=200]            # overrides for the comparison only
///   language_model: [frozen, lora]  # Idefics2's grid: each design with each (default: [frozen])
///   lora_stages: [sft]              # the stages those modes apply to (default: the last one)
/// ```
public struct ComparisonSettings: Codable, Sendable, Equatable {
    public var archs: [AdapterLayout.Architecture]
    /// The recipe's stages the designs train (in recipe order); empty: all.
    public var stages: [String]
    public var seeds: Int
    /// `STAGE.KEY=VALUE` overrides applied to the comparison's stages only.
    public var overrides: [String]
    /// How the language model trains, one column per design and mode (the `lora` and `full` modes
    /// take the stage's `lora_*` keys); `[frozen]` is the plain comparison.
    public var languageModels: [LanguageModelTraining.Mode]
    /// The stages the language-model mode applies to (empty: the last compared stage — LLaVA's
    /// stage 2); the others keep their recipe's `language_model`.
    public var languageModelStages: [String]

    public init(archs: [AdapterLayout.Architecture] = AdapterLayout.Architecture.allCases, stages: [String] = [], seeds: Int = 1,
                overrides: [String] = [], languageModels: [LanguageModelTraining.Mode] = [.frozen], languageModelStages: [String] = []) {
        self.archs = archs
        self.stages = stages
        self.seeds = seeds
        self.overrides = overrides
        self.languageModels = languageModels
        self.languageModelStages = languageModelStages
    }

    /// Every design with every language-model mode, design by design.
    public var arms: [ComparisonArm] {
        archs.flatMap { design in languageModels.map { ComparisonArm(design: design, languageModel: $0) } }
    }
}

/// One column of the comparison: a fusion design and how its language model trains.
public struct ComparisonArm: Hashable, Sendable, CustomStringConvertible {
    public var design: AdapterLayout.Architecture
    public var languageModel: LanguageModelTraining.Mode

    public init(design: AdapterLayout.Architecture, languageModel: LanguageModelTraining.Mode = .frozen) {
        self.design = design
        self.languageModel = languageModel
    }

    /// `llava-linear`, `llava-linear + LoRA LM`, `cross-attention + full LM`.
    public var description: String {
        switch languageModel {
        case .frozen: design.rawValue
        case .lora: design.rawValue + " + LoRA LM"
        case .full: design.rawValue + " + full LM"
        }
    }

    /// The arm's folder name under the comparison's output (`llava-linear`, `llava-linear-lora`).
    public var folderName: String { languageModel == .frozen ? design.rawValue : "\(design.rawValue)-\(languageModel.rawValue)" }
}

extension RecipeParser {
    func comparison(_ node: Node) throws -> ComparisonSettings {
        guard let mapping = node.mapping else { throw error(node, "compare", "expected a mapping (archs, stages, seeds, set)") }
        var settings = ComparisonSettings()
        for (key, value) in mapping {
            let name = key.string ?? ""
            let field = "compare.\(name)"
            switch name {
            case "archs":
                guard let list = value.sequence else { throw error(value, field, "expected a list of designs") }
                settings.archs = try list.map { try choice($0, field: field, kind: "a design") }
                guard !settings.archs.isEmpty else { throw error(value, field, "name at least one design") }
            case "stages":
                guard let list = value.sequence else { throw error(value, field, "expected a list of stage names") }
                settings.stages = try list.map { try string($0, field: field) }
            case "seeds":
                guard let seeds = value.int, seeds >= 1 else { throw error(value, field, "expected a positive integer") }
                settings.seeds = seeds
            case "set":
                guard let list = value.sequence else { throw error(value, field, "expected a list of STAGE.KEY=VALUE strings") }
                settings.overrides = try list.map { try string($0, field: field) }
            case "language_model":
                guard let list = value.sequence else { throw error(value, field, "expected a list, e.g. [frozen, lora]") }
                settings.languageModels = try list.map { try choice($0, field: field) }
                guard !settings.languageModels.isEmpty, Set(settings.languageModels).count == settings.languageModels.count else {
                    throw error(value, field, "name each mode once, at least one")
                }
            case "lora_stages":
                guard let list = value.sequence else { throw error(value, field, "expected a list of stage names") }
                settings.languageModelStages = try list.map { try string($0, field: field) }
            default:
                throw unknownKey(key, in: ["archs", "stages", "seeds", "set", "language_model", "lora_stages"], field: "compare")
            }
        }
        return settings
    }
}

extension Recipe {
    /// The recipe one design trains in a comparison: the selected stages (all when `stages` is
    /// empty), the comparison's overrides, every stage's `seed`, metrics logged every step, and the
    /// trainable groups (and learning-rate multipliers) the design does not have dropped — the
    /// cross-attention model's `crossAttentionLayers` and `extraEmbeddingRows` have no counterpart
    /// in the token-stream model; `visionModel` and `projector` are the same groups in both.
    /// - Throws: ``RecipeError`` for an unknown stage, a bad override, a stage kind the
    ///   token-stream model cannot train (post-training needs the cross-attention model), or a
    ///   stage left with nothing to train.
    public func forComparison(design: AdapterLayout.Architecture, stages names: [String], overrides: [String], seed: UInt64,
                              languageModel: LanguageModelTraining.Mode = .frozen, languageModelStages: [String] = []) throws -> Recipe {
        var recipe = self
        recipe.comparison = nil
        // Overrides are checked against the whole recipe, so that one for a stage the comparison
        // leaves out (`vlm run --set dpo.steps=…`) is accepted, then dropped with its stage.
        let parser = RecipeParser(file: file)
        for override in overrides { try parser.apply(override: override, to: &recipe.stages) }
        if !names.isEmpty {
            for name in names where stage(named: name) == nil {
                throw RecipeError(file: file, field: "compare.stages", reason: "no stage named '\(name)'; stages: \(stages.map(\.name).joined(separator: ", "))")
            }
            recipe.stages = recipe.stages.filter { names.contains($0.name) }
        }
        let groups = design == .crossAttention ? nil : Set(TokenStreamParameterGroup.allCases.map(\.rawValue))
        for name in languageModelStages where !recipe.stages.contains(where: { $0.name == name }) {
            throw RecipeError(file: file, field: "compare.lora_stages", reason: "'\(name)' is not a compared stage; they are \(recipe.stages.map(\.name).joined(separator: ", "))")
        }
        let modeStages = languageModelStages.isEmpty ? [recipe.stages.last!.name] : languageModelStages
        for index in recipe.stages.indices {
            var stage = recipe.stages[index]
            if modeStages.contains(stage.name) {
                stage.languageModel = languageModel == .frozen && stage.languageModel == nil ? nil
                    : LanguageModelTraining(mode: languageModel, lora: stage.languageModelTraining.lora)
                if let problem = stage.validationProblems().first {
                    throw RecipeError(file: file, field: "\(stage.name).\(problem.field)", reason: "\(problem.reason) (language model \(languageModel.rawValue) in the comparison)")
                }
            }
            if let source = stage.inputStage, !recipe.stages[..<index].contains(where: { $0.name == source }) { stage.inputStage = nil }
            stage.seed = seed
            stage.logEvery = 1
            if let groups {
                guard [.pretrain, .sft].contains(stage.kind) else {
                    throw RecipeError(file: file, field: "\(stage.name).kind",
                                      reason: "\(design.rawValue) trains pretrain and sft stages only (\(stage.kind.rawValue) needs the cross-attention model); leave it out of compare.stages")
                }
                stage.trainable = stage.trainable.filter(groups.contains)
                stage.learningRateMultipliers = stage.learningRateMultipliers.filter { groups.contains($0.key) }
                guard !stage.trainable.isEmpty else {
                    throw RecipeError(file: file, field: "\(stage.name).trainable",
                                      reason: "nothing left to train for \(design.rawValue) (its groups: \(groups.sorted().joined(separator: ", ")))")
                }
            }
            recipe.stages[index] = stage
        }
        return recipe
    }
}
