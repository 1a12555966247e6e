import Foundation
import Layers
import Models
import TensorCore
import Yams

/// How a stage trains the language model of a vision model (recipe keys `language_model`,
/// `lora_r`, `lora_alpha`, `lora_dropout`, `lora_target_modules`).
///
/// ```yaml
/// - name: sft
///   kind: sft
///   language_model: lora        # frozen (the default), full, or lora
///   lora_r: 8
///   lora_alpha: 16
///   lora_target_modules: [q_proj, k_proj, v_proj, o_proj]
/// ```
///
/// `full` trains the text model's own weights (the `textModel` group); `lora` attaches PEFT-style
/// adapters (``LowRankAdapter``) to the text model's target linear layers and trains them alone.
/// A LoRA stage's output model has the adapters merged into its weights, and beside it PEFT's
/// `peft/adapter_model.safetensors` and `peft/adapter_config.json` for the Llama text model it started
/// from (for LLaVA, for the LLaVA model).
public struct LanguageModelTraining: Codable, Sendable, Equatable {
    /// What trains in the language model.
    public enum Mode: String, Codable, Sendable, CaseIterable {
        /// Nothing: the text path stays the base Llama's, bit for bit.
        case frozen
        /// Every weight of the text model.
        case full
        /// Low-rank adapters on the target modules; the base weights stay frozen.
        case lora
    }

    public var mode: Mode
    /// The adapters' shape and targets (used when ``mode`` is `lora`).
    public var lora: LoRAConfiguration

    public init(mode: Mode = .frozen, lora: LoRAConfiguration = LoRAConfiguration()) {
        self.mode = mode
        self.lora = lora
    }

    /// The parameter group a LoRA stage adds to `trainable`: every adapter tensor.
    public static let adapterGroup = "textModelLoRA"
    /// The adapter tensors' name patterns.
    public static let adapterPatterns = ["**.lora_A.weight", "**.lora_B.weight"]
    /// The linear layers of a Llama text model LoRA may target (PEFT's names).
    public static let knownTargets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    /// Problems no type can catch, with the recipe key each is about.
    func problems(kind: StageKind, trainable: [String]) -> [(field: String, reason: String)] {
        var problems: [(String, String)] = []
        if mode != .frozen && ![.pretrain, .sft].contains(kind) {
            problems.append(("language_model", "'\(mode.rawValue)' is for pretrain and sft stages; a \(kind.rawValue) stage names the text model in 'trainable' if at all"))
        }
        if mode == .lora {
            problems += lora.problems
            let unknown = lora.targetModules.filter { !Self.knownTargets.contains($0) }
            if !unknown.isEmpty {
                problems.append(("lora_target_modules", "\(unknown.joined(separator: ", ")) is not a linear layer of the Llama text model; one of \(Self.knownTargets.joined(separator: ", "))"))
            }
            // LLaVA calls its text model languageModel.
            for group in ["textModel", "languageModel"] where trainable.contains(group) {
                problems.append(("trainable", "\(group) trains the whole text model, language_model: lora only adapters; use language_model: full, or drop \(group)"))
            }
        }
        return problems
    }
}

extension StageSettings {
    /// The language model's training, frozen when the recipe says nothing.
    public var languageModelTraining: LanguageModelTraining { languageModel ?? LanguageModelTraining() }

    /// The parameter groups the stage trains: `trainable`, plus the text model (`full`) or its
    /// adapters (`lora`).
    public var trainingGroups: [String] {
        switch languageModelTraining.mode {
        case .frozen: trainable
        case .full: trainable.contains("textModel") || trainable.contains("languageModel") ? trainable : trainable + ["textModel"]   // LLaVA's name for it
        case .lora: trainable + [LanguageModelTraining.adapterGroup]
        }
    }
}

extension RecipeParser {
    static let languageModelSetters: [String: Setter] = [
        "language_model": { parser, settings, node, field in
            let mode: LanguageModelTraining.Mode = try parser.choice(node, field: field)
            settings.languageModel = LanguageModelTraining(mode: mode, lora: settings.languageModelTraining.lora)
        },
        "lora_r": { parser, settings, node, field in
            guard let value = node.int, value >= 1 else { throw parser.error(node, field, "expected a whole number ≥ 1, found '\(node.string ?? "\(node)")'") }
            settings.languageModel = settings.languageModelTraining.with { $0.lora.rank = value }
        },
        "lora_alpha": { parser, settings, node, field in
            guard let value = node.float, node.scalar != nil, value > 0, value.isFinite else {
                throw parser.error(node, field, "expected a positive number, found '\(node.string ?? "\(node)")'")
            }
            settings.languageModel = settings.languageModelTraining.with { $0.lora.alpha = value }
        },
        "lora_dropout": { parser, settings, node, field in
            guard let value = node.float, node.scalar != nil, (0..<1).contains(value) else {
                throw parser.error(node, field, "expected a number in [0, 1), found '\(node.string ?? "\(node)")'")
            }
            settings.languageModel = settings.languageModelTraining.with { $0.lora.dropout = value }
        },
        "lora_target_modules": { parser, settings, node, field in
            let names: [String]
            if let sequence = node.sequence {
                names = try sequence.map { try parser.string($0, field: field) }
            } else if let text = node.scalar?.string {
                names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }   // PEFT also takes "q_proj,v_proj"
            } else {
                throw parser.error(node, field, "expected a list of module names, e.g. [q_proj, v_proj]")
            }
            for name in names where !LanguageModelTraining.knownTargets.contains(name) {
                throw parser.error(node, field, "'\(name)' is not a linear layer of the Llama text model; one of \(LanguageModelTraining.knownTargets.joined(separator: ", "))")
            }
            guard !names.isEmpty else { throw parser.error(node, field, "name at least one module") }
            settings.languageModel = settings.languageModelTraining.with { $0.lora.targetModules = names }
        },
    ]
}

extension LanguageModelTraining {
    func with(_ change: (inout Self) -> Void) -> Self {
        var copy = self
        change(&copy)
        return copy
    }
}

// MARK: - Applying it to a model

/// Attaches a LoRA stage's adapters to the text model of `model` (``StageSettings/seed`` draws
/// them): the linear layers named in `lora_target_modules` among the model's `textModel` group —
/// the Llama's own layers; Mllama's cross-attention layers, which train in full, get none.
/// - Returns: the adapted layers' names (empty for a stage that does not use LoRA).
/// - Throws: ``TrainingError`` when the model has no text model or no layer matches.
@discardableResult
public func attachLanguageModelAdapters(to model: any TrainableLanguageModel, stage: StageSettings) throws -> [String] {
    let training = stage.languageModelTraining
    guard training.mode == .lora else { return [] }
    guard let textPatterns = model.parameterPatterns(forGroup: "textModel")?.map(NamePattern.init) else {
        throw TrainingError("\(stage.name): language_model: lora needs a model with a text model group; groups: \(model.parameterGroupNames.joined(separator: ", "))")
    }
    let names = model.attachLowRankAdapters(training.lora, seed: stage.seed) { name in
        textPatterns.contains { $0.matches(name + ".weight") }
    }
    guard !names.isEmpty else {
        throw TrainingError("\(stage.name): lora_target_modules \(training.lora.targetModules) match no linear layer of the text model")
    }
    return names
}
