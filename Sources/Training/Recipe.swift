import Foundation
import TensorCore
import Yams

/// A staged training recipe: data, in `pipelines/*.yaml`.
///
/// ```yaml
/// # What this recipe is, and the command that runs it.
/// data_root: ../data            # dataset paths are relative to this (default: the recipe's folder)
/// defaults:                     # applied to every stage before its own keys
///   micro_batch_size: 8
/// stages:
///   - name: pretrain
///     kind: pretrain
///     datasets: [{path: pairs.jsonl, weight: 1}]
///     trainable: [visionModel, projector, crossAttentionLayers, extraEmbeddingRows]
///     steps: 200
/// ```
///
/// Every key of a stage is a ``StageSettings`` property in snake_case. An unknown key, a value of
/// the wrong type, or an invalid value is a ``RecipeError`` naming the file, the line and the field.
public struct Recipe: Sendable {
    /// Where the recipe came from (for messages).
    public var file: String
    /// The folder dataset paths are relative to.
    public var dataRoot: URL
    /// The stages, in order.
    public var stages: [StageSettings]
    /// The `compare:` section: the fusion comparison `vlm run` runs after the stages, and the
    /// defaults of `vlm compare` (nil when absent; `vlm train` ignores it).
    public var comparison: ComparisonSettings? = nil

    /// Reads and checks a recipe, then applies `overrides` (`STAGE.KEY=VALUE`, or `KEY=VALUE` for
    /// every stage; VALUE is YAML, e.g. `sft.trainable=[projector]`).
    public static func load(from url: URL, overrides: [String] = [], dataRoot: URL? = nil) throws -> Recipe {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw RecipeError(file: url.path, reason: "cannot read the recipe (\(error.localizedDescription))")
        }
        return try parse(yaml: text, file: url.path, directory: url.deletingLastPathComponent(), overrides: overrides,
                         dataRoot: dataRoot)
    }

    /// Parses recipe text; `directory` is where relative paths start.
    public static func parse(yaml: String, file: String, directory: URL, overrides: [String] = [],
                             dataRoot: URL? = nil) throws -> Recipe {
        let node: Node?
        do { node = try Yams.compose(yaml: yaml) } catch {
            throw RecipeError(file: file, reason: "not valid YAML: \(error)")
        }
        guard let root = node?.mapping else { throw RecipeError(file: file, line: node?.mark?.line, reason: "a recipe is a mapping with a 'stages' list") }
        let context = RecipeParser(file: file)
        let directory = URL(fileURLWithPath: directory.path, isDirectory: true)
        var resolvedDataRoot = directory
        var defaults: Node.Mapping? = nil
        var stageNodes: Node.Sequence? = nil
        var comparison: ComparisonSettings? = nil
        for (key, value) in root {
            switch key.string ?? "" {
            case "data_root":
                let path = try context.string(value, field: "data_root")
                resolvedDataRoot = URL(fileURLWithPath: path, isDirectory: true, relativeTo: directory).standardizedFileURL
            case "defaults":
                guard let mapping = value.mapping else { throw context.error(value, "defaults", "expected a mapping of stage keys") }
                defaults = mapping
            case "stages":
                guard let sequence = value.sequence else { throw context.error(value, "stages", "expected a list of stages") }
                stageNodes = sequence
            case "description":
                break
            case "compare":
                comparison = try context.comparison(value)
            default:
                throw context.unknownKey(key, in: ["data_root", "defaults", "stages", "description", "compare"], field: nil)
            }
        }
        guard let stageNodes, !stageNodes.isEmpty else { throw RecipeError(file: file, reason: "'stages' is missing or empty") }

        var stages: [StageSettings] = []
        for (index, stageNode) in stageNodes.enumerated() {
            guard let mapping = stageNode.mapping else {
                throw context.error(stageNode, "stages[\(index)]", "expected a mapping (name, kind, datasets, …)")
            }
            stages.append(try context.stage(mapping, defaults: defaults, index: index))
        }
        var names = Set<String>()
        for (index, stage) in stages.enumerated() where !names.insert(stage.name).inserted {
            throw RecipeError(file: file, line: stageNodes[index].mark?.line, field: "stages[\(index)].name",
                              reason: "the stage name '\(stage.name)' is used twice")
        }
        for override in overrides { try context.apply(override: override, to: &stages) }
        for (index, stage) in stages.enumerated() {
            if let source = stage.inputStage, !stages[..<index].contains(where: { $0.name == source }) {
                throw RecipeError(file: file, line: stageNodes[index].mark?.line, field: "stages[\(index)] '\(stage.name)'.input_stage",
                                  reason: "'\(source)' is not an earlier stage; earlier stages: \(stages[..<index].map(\.name).joined(separator: ", "))")
            }
        }
        // A reward stage's output is a reward model: no other kind of stage trains on from it.
        for (index, stage) in stages.enumerated() where stage.kind != .reward {
            guard let source = stages.inputStageName(at: index),
                  let rewardStage = stages[..<index].first(where: { $0.name == source && $0.kind == .reward }) else { continue }
            let policy = stages[..<index].last { $0.kind != .reward }.map { " (input_stage: \($0.name))" } ?? ""
            throw RecipeError(file: file, line: stageNodes[index].mark?.line, field: "stages[\(index)] '\(stage.name)'.input_stage",
                              reason: "'\(rewardStage.name)'\(stage.inputStage == nil ? ", the stage before it," : "") trains a reward model, "
                                + "and a \(stage.kind.rawValue) stage trains on from a policy; name the stage it starts from\(policy)")
        }
        for (index, stage) in stages.enumerated() {
            if let problem = stage.validationProblems().first {
                throw RecipeError(file: file, line: stageNodes[index].mark?.line, field: "stages[\(index)] '\(stage.name)'.\(problem.field)",
                                  reason: problem.reason)
            }
        }
        if let comparison {
            for name in comparison.stages where !stages.contains(where: { $0.name == name }) {
                throw RecipeError(file: file, field: "compare.stages", reason: "no stage named '\(name)'; stages: \(stages.map(\.name).joined(separator: ", "))")
            }
        }
        return Recipe(file: file, dataRoot: dataRoot ?? resolvedDataRoot, stages: stages, comparison: comparison)
    }

    /// The stage called `name`.
    public func stage(named name: String) -> StageSettings? { stages.first { $0.name == name } }

    /// A dataset path resolved against the data root.
    public func url(of dataset: DatasetSpec) -> URL {
        URL(fileURLWithPath: dataset.path, relativeTo: dataRoot).standardizedFileURL
    }
}

/// Turns YAML nodes into stage settings, with errors that name the file, line and field.
struct RecipeParser {
    let file: String

    func error(_ node: Node, _ field: String?, _ reason: String) -> RecipeError {
        RecipeError(file: file, line: node.mark?.line, field: field, reason: reason)
    }

    func unknownKey(_ key: Node, in known: [String], field: String?) -> RecipeError {
        let name = key.string ?? "\(key)"
        let suggestion = known.min { editDistance(name, $0) < editDistance(name, $1) }
            .flatMap { editDistance(name, $0) <= max(2, name.count / 3) ? " (did you mean '\($0)'?)" : nil } ?? ""
        return error(key, field.map { "\($0).\(name)" } ?? name, "unknown key\(suggestion); known keys: \(known.sorted().joined(separator: ", "))")
    }

    /// The case of `E` a scalar names, or an error naming the field, what was found and the choices
    /// ("'x' is not one of a, b" or, with `kind`, "'x' is not a design; one of a, b").
    func choice<E: RawRepresentable & CaseIterable>(_ node: Node, field: String, kind: String? = nil) throws -> E where E.RawValue == String {
        guard node.scalar != nil, let value = node.string.flatMap(E.init(rawValue:)) else {
            let choices = E.allCases.map(\.rawValue).joined(separator: ", ")
            throw error(node, field, "'\(node.string ?? "\(node)")' is not \(kind.map { "\($0); one" } ?? "one") of \(choices)")
        }
        return value
    }

    func string(_ node: Node, field: String) throws -> String {
        guard let scalar = node.scalar else { throw error(node, field, "expected a string") }
        return scalar.string
    }

    func stage(_ mapping: Node.Mapping, defaults: Node.Mapping?, index: Int) throws -> StageSettings {
        let field = "stages[\(index)]"
        guard let nameNode = mapping["name"], let name = nameNode.string, !name.isEmpty else {
            throw RecipeError(file: file, line: mapping.mark?.line, field: "\(field).name", reason: "every stage needs a name")
        }
        guard let kindNode = mapping["kind"] else {
            throw RecipeError(file: file, line: mapping.mark?.line, field: "\(field).kind",
                              reason: "missing; one of \(StageKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let kind: StageKind = try choice(kindNode, field: "\(field).kind", kind: "a stage kind")
        var settings = StageSettings(name: name, kind: kind)
        for (key, value) in defaults ?? [:] {
            guard let keyName = key.string, keyName != "name", keyName != "kind" else {
                throw error(key, "defaults", "'name' and 'kind' belong to each stage")
            }
            try set(keyName, key: key, value: value, on: &settings, field: "defaults")
        }
        for (key, value) in mapping {
            guard let keyName = key.string else { throw error(key, field, "keys are strings") }
            if keyName == "name" || keyName == "kind" { continue }
            try set(keyName, key: key, value: value, on: &settings, field: "\(field) '\(name)'")
        }
        return settings
    }

    /// Applies `STAGE.KEY=VALUE` or `KEY=VALUE` (every stage).
    func apply(override: String, to stages: inout [StageSettings]) throws {
        guard let equals = override.firstIndex(of: "=") else {
            throw RecipeError(file: file, field: "--set \(override)", reason: "expected STAGE.KEY=VALUE or KEY=VALUE")
        }
        let path = String(override[..<equals]), valueText = String(override[override.index(after: equals)...])
        let parts = path.split(separator: ".", maxSplits: 1).map(String.init)
        let (stageName, key) = parts.count == 2 ? (parts[0] as String?, parts[1]) : (nil, parts[0])
        let value: Node
        do { value = try Yams.compose(yaml: valueText) ?? Node("") } catch {
            throw RecipeError(file: file, field: "--set \(path)", reason: "the value is not valid YAML: \(error)")
        }
        let targets = stages.indices.filter { stageName == nil || stages[$0].name == stageName }
        guard !targets.isEmpty else {
            throw RecipeError(file: file, field: "--set \(path)",
                              reason: "no stage named '\(stageName!)'; stages: \(stages.map(\.name).joined(separator: ", "))")
        }
        for index in targets {
            if key == "kind" || key == "name" {
                throw RecipeError(file: file, field: "--set \(path)", reason: "a stage's \(key) cannot be overridden")
            }
            try set(key, key: Node(key), value: value, on: &stages[index], field: "--set \(stages[index].name)")
        }
    }

    func set(_ name: String, key: Node, value: Node, on settings: inout StageSettings, field: String) throws {
        guard let setter = Self.setters[name] else { throw unknownKey(key, in: Array(Self.setters.keys), field: field) }
        try setter(self, &settings, value, "\(field).\(name)")
    }

    typealias Setter = (RecipeParser, inout StageSettings, Node, String) throws -> Void

    static let setters: [String: Setter] = baseSetters.merging(postTrainingSetters) { base, _ in base }
        .merging(languageModelSetters) { base, _ in base }

    static let baseSetters: [String: Setter] = [
        "datasets": datasets(\.datasets),
        "eval_datasets": datasets(\.evalDatasets),
        "trainable": strings(\.trainable),
        "learning_rate": double(\.learningRate),
        "weight_decay": double(\.weightDecay),
        "beta1": double(\.beta1),
        "beta2": double(\.beta2),
        "epsilon": double(\.epsilon),
        "schedule": enumeration(\.schedule),
        "warmup_steps": int(\.warmupSteps),
        "min_learning_rate_ratio": double(\.minLearningRateRatio),
        "max_grad_norm": double(\.maxGradNorm),
        "micro_batch_size": int(\.microBatchSize),
        "gradient_accumulation": int(\.gradientAccumulation),
        "max_length": int(\.maxLength),
        "max_images": int(\.maxImages),
        "steps": int(\.steps),
        "epochs": double(\.epochs),
        "eval_every": int(\.evalEvery),
        "eval_samples": int(\.evalSamples),
        "eval_max_new_tokens": int(\.evalMaxNewTokens),
        "checkpoint_every": int(\.checkpointEvery),
        "log_every": int(\.logEvery),
        "seed": { parser, settings, node, field in
            guard let value = node.int, value >= 0 else { throw parser.error(node, field, "expected a non-negative whole number, found '\(node.string ?? "\(node)")'") }
            settings.seed = UInt64(value)
        },
        "max_skip_share": double(\.maxSkipShare),
        "max_non_finite_steps": int(\.maxNonFiniteSteps),
        "activation_checkpointing": { parser, settings, node, field in
            guard let value = node.bool, node.scalar != nil else {
                throw parser.error(node, field, "expected true or false, found '\(node.string ?? "\(node)")'")
            }
            settings.activationCheckpointing = value
        },
        "blank_images": { parser, settings, node, field in
            guard let value = node.bool, node.scalar != nil else {
                throw parser.error(node, field, "expected true or false, found '\(node.string ?? "\(node)")'")
            }
            settings.blankImages = value ? true : nil
        },
        "precision": { parser, settings, node, field in
            let value: MatrixPrecision = try parser.choice(node, field: field)
            settings.precision = value == .float32 ? nil : value
        },
        "learning_rate_multipliers": { parser, settings, node, field in
            guard let mapping = node.mapping else {
                throw parser.error(node, field, "expected a mapping of parameter group or name pattern to a factor, e.g. {projector: 10}")
            }
            var multipliers: [String: Double] = [:]
            for (key, value) in mapping {
                let name = try parser.string(key, field: field)
                guard let factor = value.float, value.scalar != nil, factor > 0, factor.isFinite else {
                    throw parser.error(value, "\(field).\(name)", "expected a positive number, found '\(value.string ?? "\(value)")'")
                }
                multipliers[name] = factor
            }
            settings.learningRateMultipliers = multipliers
        },
    ]

    /// The keys a stage accepts.
    static var fieldNames: [String] { ["name", "kind"] + setters.keys.sorted() }

    static func double(_ path: WritableKeyPath<StageSettings, Double>) -> Setter {
        { parser, settings, node, field in
            guard let value = node.float, node.scalar != nil else {
                throw parser.error(node, field, "expected a number, found '\(node.string ?? "\(node)")'")
            }
            settings[keyPath: path] = value
        }
    }

    static func int(_ path: WritableKeyPath<StageSettings, Int>) -> Setter {
        { parser, settings, node, field in
            guard let value = node.int else { throw parser.error(node, field, "expected a whole number, found '\(node.string ?? "\(node)")'") }
            settings[keyPath: path] = value
        }
    }

    static func enumeration<E: RawRepresentable & CaseIterable>(_ path: WritableKeyPath<StageSettings, E>) -> Setter where E.RawValue == String {
        { parser, settings, node, field in
            settings[keyPath: path] = try parser.choice(node, field: field) as E
        }
    }

    static func strings(_ path: WritableKeyPath<StageSettings, [String]>) -> Setter {
        { parser, settings, node, field in
            guard let sequence = node.sequence else { throw parser.error(node, field, "expected a list, e.g. [projector, visionModel]") }
            settings[keyPath: path] = try sequence.map { try parser.string($0, field: field) }
        }
    }

    static func datasets(_ path: WritableKeyPath<StageSettings, [DatasetSpec]>) -> Setter {
        { parser, settings, node, field in
            guard let sequence = node.sequence else {
                throw parser.error(node, field, "expected a list of datasets ({path: FILE, weight: W} or FILE)")
            }
            settings[keyPath: path] = try sequence.enumerated().map { index, item in
                if let path = item.scalar?.string { return DatasetSpec(path: path) }
                guard let mapping = item.mapping else { throw parser.error(item, "\(field)[\(index)]", "expected FILE or {path, weight, format}") }
                var spec = DatasetSpec(path: "")
                for (key, value) in mapping {
                    switch key.string ?? "" {
                    case "path": spec.path = try parser.string(value, field: "\(field)[\(index)].path")
                    case "weight":
                        guard let weight = value.float else { throw parser.error(value, "\(field)[\(index)].weight", "expected a number") }
                        spec.weight = weight
                    case "format": spec.format = try parser.string(value, field: "\(field)[\(index)].format")
                    default: throw parser.unknownKey(key, in: ["path", "weight", "format"], field: "\(field)[\(index)]")
                    }
                }
                guard !spec.path.isEmpty else { throw parser.error(item, "\(field)[\(index)].path", "missing") }
                return spec
            }
        }
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var previous = Array(0...b.count)
    for i in 1...max(1, a.count) where !a.isEmpty {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...max(1, b.count) where !b.isEmpty {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return a.isEmpty ? b.count : previous[b.count]
}
