import Checkpoint
import Foundation
import Layers
import TensorCore

// PEFT's LoRA adapter files: `adapter_config.json` (`LoraConfig`) and `adapter_model.safetensors`
// with keys `base_model.model.<module>.lora_A.weight` / `.lora_B.weight`, `<module>` named as in the
// transformers model PEFT wraps (``PEFTAdaptable``). A Llama's or a token-stream / Mllama model's
// adapters adapt the Llama it was built on (`PeftModel.from_pretrained(LlamaForCausalLM…, dir)`);
// LLaVA's adapt the LLaVA checkpoint itself (`PeftModel.from_pretrained(LlavaForConditionalGeneration…, dir)`).

/// A model whose LoRA adapters PEFT can name: the transformers module each adapted layer is.
public protocol PEFTAdaptable: Module {
    /// PEFT's module name (the wrapped transformers model's, without `base_model.model.`) of one of
    /// this model's modules, or nil for a module the PEFT model does not have.
    func peftModuleName(of name: String) -> String?
    /// `adapter_config.json`'s `target_modules` for adapters on the layers named `modules`
    /// (`q_proj`…): a list, or a regular expression when those names also occur outside the text model.
    func peftTargetModules(_ modules: [String]) -> PEFTAdapterConfig.TargetModules
}

/// A model whose text tower is a Llama checkpoint's layers under other names; its PEFT files adapt
/// that Llama.
public protocol LlamaTextTower: PEFTAdaptable {
    /// The base Llama's name (`model.layers.2.self_attn.q_proj`) of one of this model's modules,
    /// or nil for a module that is not the Llama's.
    func llamaName(of name: String) -> String?
}

extension LlamaTextTower {
    public func peftModuleName(of name: String) -> String? { llamaName(of: name) }
    public func peftTargetModules(_ modules: [String]) -> PEFTAdapterConfig.TargetModules { .names(modules) }
}

extension LlamaForCausalLM: LlamaTextTower {
    public func llamaName(of name: String) -> String? { name }
}

extension TokenStreamModel: LlamaTextTower {
    public func llamaName(of name: String) -> String? {
        name.hasPrefix("language_model.") ? String(name.dropFirst("language_model.".count)) : nil
    }
}

extension LlavaForConditionalGeneration: PEFTAdaptable {
    /// transformers 5's in-memory names, which PEFT keys by (``transformers5Name(_:)``):
    /// `language_model.model.X` is `model.language_model.X`, `multi_modal_projector.X`
    /// `model.multi_modal_projector.X`.
    public func peftModuleName(of name: String) -> String? { Self.transformers5Name(name + ".").dropLastDot }

    /// A regular expression over the text model's layers: CLIP's attention has `q_proj`, `k_proj`
    /// and `v_proj` too, and PEFT would adapt those as well for a plain list of names.
    public func peftTargetModules(_ modules: [String]) -> PEFTAdapterConfig.TargetModules {
        .pattern(#"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.("# + modules.joined(separator: "|") + ")")
    }
}

extension MllamaForConditionalGeneration: LlamaTextTower {
    /// Mllama's text layers interleave the Llama's (renumbered) with cross-attention layers; a
    /// self-attention layer's Llama index is its place among the non-cross-attention layers.
    public func llamaName(of name: String) -> String? {
        let prefix = "language_model.model.layers."
        guard name.hasPrefix(prefix) else {
            return name.hasPrefix("language_model.") ? String(name.dropFirst("language_model.".count)) : nil
        }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let index = Int(rest[..<dot]) else { return nil }
        let crossLayers = config.textConfig.crossAttentionLayers
        guard !crossLayers.contains(index) else { return nil }
        return "model.layers.\(index - crossLayers.filter { $0 < index }.count)" + rest[dot...]
    }
}

extension String {
    fileprivate var dropLastDot: String { hasSuffix(".") ? String(dropLast()) : self }
}

/// PEFT's `adapter_config.json` for a LoRA adapter of a causal language model (`LoraConfig`).
public struct PEFTAdapterConfig: Codable, Sendable, Equatable {
    /// `target_modules`: module names (a layer is adapted when its name is one or ends in `.one`),
    /// or one string, which PEFT matches against whole module names as a regular expression.
    public enum TargetModules: Codable, Sendable, Equatable {
        case names([String])
        case pattern(String)

        public init(from decoder: Decoder) throws {
            let value = try decoder.singleValueContainer()
            if let list = try? value.decode([String].self) { self = .names(list) } else { self = .pattern(try value.decode(String.self)) }
        }

        public func encode(to encoder: Encoder) throws {
            var value = encoder.singleValueContainer()
            switch self {
            case .names(let names): try value.encode(names)
            case .pattern(let pattern): try value.encode(pattern)
            }
        }
    }

    public var peftType = "LORA"
    public var taskType = "CAUSAL_LM"
    public var r: Int
    public var loraAlpha: Double
    public var loraDropout: Double
    public var targetModules: TargetModules
    public var baseModelNameOrPath: String?
    public var bias = "none"
    public var fanInFanOut = false
    public var useRSLoRA = false
    public var useDoRA = false
    /// PEFT ≥ 0.15's bias on lora_B.
    public var loraBias = false
    public var inferenceMode = true
    public var initLoRAWeights = true
    public var rankPattern: [String: Int] = [:]
    public var alphaPattern: [String: Double] = [:]
    public var modulesToSave: [String]? = nil
    public var layersToTransform: [Int]? = nil
    public var layersPattern: String? = nil
    public var revision: String? = nil

    enum CodingKeys: String, CodingKey {
        case peftType = "peft_type", taskType = "task_type", r, loraAlpha = "lora_alpha", loraDropout = "lora_dropout"
        case targetModules = "target_modules", baseModelNameOrPath = "base_model_name_or_path", bias
        case fanInFanOut = "fan_in_fan_out", useRSLoRA = "use_rslora", useDoRA = "use_dora", loraBias = "lora_bias", inferenceMode = "inference_mode"
        case initLoRAWeights = "init_lora_weights", rankPattern = "rank_pattern", alphaPattern = "alpha_pattern"
        case modulesToSave = "modules_to_save", layersToTransform = "layers_to_transform", layersPattern = "layers_pattern", revision
    }

    /// - Parameter targetModules: `target_modules` as written (default: the configuration's names).
    public init(lora: LoRAConfiguration, baseModel: String?, targetModules: TargetModules? = nil) {
        r = lora.rank
        loraAlpha = lora.alpha
        loraDropout = lora.dropout
        self.targetModules = targetModules ?? .names(lora.targetModules)
        baseModelNameOrPath = baseModel
    }

    /// Reads the fields VLMKit uses, with PEFT's defaults for absent ones; `target_modules` may be a
    /// list or one string (read as one module name: PEFT's regular-expression form is not read).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        peftType = try c.decodeIfPresent(String.self, forKey: .peftType) ?? "LORA"
        taskType = try c.decodeIfPresent(String.self, forKey: .taskType) ?? "CAUSAL_LM"
        r = try c.decodeIfPresent(Int.self, forKey: .r) ?? 8
        loraAlpha = try c.decodeIfPresent(Double.self, forKey: .loraAlpha) ?? 8
        loraDropout = try c.decodeIfPresent(Double.self, forKey: .loraDropout) ?? 0
        targetModules = try c.decode(TargetModules.self, forKey: .targetModules)
        baseModelNameOrPath = try c.decodeIfPresent(String.self, forKey: .baseModelNameOrPath)
        bias = try c.decodeIfPresent(String.self, forKey: .bias) ?? "none"
        fanInFanOut = try c.decodeIfPresent(Bool.self, forKey: .fanInFanOut) ?? false
        useRSLoRA = try c.decodeIfPresent(Bool.self, forKey: .useRSLoRA) ?? false
        useDoRA = try c.decodeIfPresent(Bool.self, forKey: .useDoRA) ?? false
        loraBias = try c.decodeIfPresent(Bool.self, forKey: .loraBias) ?? false
        inferenceMode = try c.decodeIfPresent(Bool.self, forKey: .inferenceMode) ?? true
        initLoRAWeights = (try? c.decodeIfPresent(Bool.self, forKey: .initLoRAWeights)) ?? true
        rankPattern = try c.decodeIfPresent([String: Int].self, forKey: .rankPattern) ?? [:]
        alphaPattern = try c.decodeIfPresent([String: Double].self, forKey: .alphaPattern) ?? [:]
        modulesToSave = try c.decodeIfPresent([String].self, forKey: .modulesToSave)
        layersToTransform = try? c.decodeIfPresent([Int].self, forKey: .layersToTransform)
        layersPattern = try? c.decodeIfPresent(String.self, forKey: .layersPattern)
        revision = try c.decodeIfPresent(String.self, forKey: .revision)
    }

    /// The adapters' shape, or the first field VLMKit does not implement.
    public func loraConfiguration(file: String) throws -> LoRAConfiguration {
        func refuse(_ field: String, _ value: String) -> CheckpointError {
            CheckpointError(file: file, reason: "\(field) \(value) is not supported (VLMKit reads plain LoRA adapters)")
        }
        guard peftType == "LORA" else { throw refuse("peft_type", "'\(peftType)'") }
        guard bias == "none" else { throw refuse("bias", "'\(bias)'") }
        guard !fanInFanOut else { throw refuse("fan_in_fan_out", "true") }
        guard !useDoRA else { throw refuse("use_dora", "true") }
        guard !loraBias else { throw refuse("lora_bias", "true") }
        guard rankPattern.isEmpty && alphaPattern.isEmpty else { throw refuse("rank_pattern/alpha_pattern", "per-module values") }
        // rsLoRA scales by α/√r: the same update as α·√r over r.
        let alpha = useRSLoRA ? loraAlpha * Double(r).squareRoot() : loraAlpha
        let names: [String]
        switch targetModules {
        case .names(let list): names = list
        case .pattern(let one): names = [one]
        }
        return LoRAConfiguration(rank: r, alpha: alpha, dropout: loraDropout, targetModules: names)
    }
}

/// PEFT's LoRA adapter files.
public enum PEFTAdapter {
    public static let weightsFile = "adapter_model.safetensors"
    public static let configFile = "adapter_config.json"
    /// What PEFT's `PeftModelForCausalLM` puts before the base model's own names.
    public static let keyPrefix = "base_model.model."
    /// Where a LoRA stage writes its PEFT files, inside the stage's model folder: beside `config.json`,
    /// transformers' `from_pretrained(folder)` would load the merged weights and apply the adapter on
    /// top of them again (measured with transformers 5.24).
    public static let stageSubfolder = "peft"

    /// The adapter tensors of `model` under PEFT's names (``PEFTAdaptable/peftModuleName(of:)``), and
    /// every parameter of the modules `savedModules` names (this model's names, e.g.
    /// `multi_modal_projector`) as PEFT keys its `modules_to_save`.
    public static func tensors(of model: any PEFTAdaptable, savedModules: [String] = []) throws -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for (name, layer) in model.lowRankAdaptedLayers() {
            guard let adapter = layer.adapter, let peftName = model.peftModuleName(of: name) else {
                throw CheckpointError(file: name, reason: "this adapted layer is not one of the text model's: PEFT files cannot name it")
            }
            tensors[keyPrefix + peftName + ".lora_A.weight"] = adapter.down.weight.detached()
            tensors[keyPrefix + peftName + ".lora_B.weight"] = adapter.up.weight.detached()
        }
        for module in savedModules {
            let parameters = model.parameters().filter { $0.name.hasPrefix(module + ".") }
            guard !parameters.isEmpty else { throw CheckpointError(file: module, reason: "no parameters under this module to save") }
            for (name, tensor) in parameters {
                guard let peftName = model.peftModuleName(of: name) else {
                    throw CheckpointError(file: name, reason: "PEFT files cannot name this parameter")
                }
                tensors[keyPrefix + peftName] = tensor.detached()
            }
        }
        return tensors
    }

    /// Writes `adapter_model.safetensors` and `adapter_config.json` for the adapters of `model`
    /// into `directory` (created), each file atomically.
    /// - Parameters:
    ///   - baseModel: `base_model_name_or_path`: where the model PEFT wraps is (the base Llama, or
    ///     for LLaVA the LLaVA checkpoint).
    ///   - savedModules: modules (this model's names) that trained in full beside the adapters
    ///     (LLaVA's `multi_modal_projector`): written whole, and listed in `modules_to_save`.
    public static func write(from model: any PEFTAdaptable, configuration: LoRAConfiguration, baseModel: String?,
                             savedModules: [String] = [], to directory: URL) throws {
        let tensors = try tensors(of: model, savedModules: savedModules)
        guard !tensors.isEmpty else { throw CheckpointError(file: directory.path, reason: "the model has no LoRA adapters to write") }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try writeSafetensors(tensors: tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent(weightsFile))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var config = PEFTAdapterConfig(lora: configuration, baseModel: baseModel,
                                       targetModules: model.peftTargetModules(configuration.targetModules))
        if !savedModules.isEmpty { config.modulesToSave = try savedModules.map { module in
            guard let name = model.peftModuleName(of: module) else { throw CheckpointError(file: module, reason: "PEFT files cannot name this module") }
            return name
        } }
        try AtomicFile.write(try encoder.encode(config), to: directory.appendingPathComponent(configFile))
    }

    /// Reads a PEFT LoRA adapter folder and attaches its adapters to `model` (frozen, as loaded): a
    /// Llama and the base Llama's files, or a LLaVA model and files keyed by it.
    /// Strict: a tensor that names no linear layer of the model, a layer with only one of its two
    /// matrices, a shape that does not fit, or a target layer without tensors is an error naming them.
    /// A `target_modules` regular expression is matched against whole module names, as PEFT does.
    /// - Returns: the adapter's configuration (for a regular expression, the names of the layers it matched).
    @discardableResult
    public static func load(directory: URL, into model: any PEFTAdaptable) throws -> LoRAConfiguration {
        let configURL = directory.appendingPathComponent(configFile)
        guard let data = FileManager.default.contents(atPath: configURL.path) else {
            throw CheckpointError(file: configURL.path, reason: "missing: a PEFT adapter folder needs \(configFile)")
        }
        let config: PEFTAdapterConfig
        do { config = try JSONDecoder().decode(PEFTAdapterConfig.self, from: data) } catch {
            throw CheckpointError(file: configURL.path, reason: "not a PEFT adapter config (\(error))")
        }
        var lora = try config.loraConfiguration(file: configURL.path)
        let weightsPath = directory.appendingPathComponent(weightsFile).path
        let checkpoint = try SafetensorsCheckpoint(path: weightsPath)
        let layers = Dictionary(uniqueKeysWithValues: model.namedLinearLayers().compactMap { name, layer in
            model.peftModuleName(of: name).map { ($0, layer) }
        })
        // modules_to_save: whole modules that trained beside the adapters (PEFT: a module whose name ends in one).
        let saved = config.modulesToSave ?? []
        let savedSlots = Dictionary(uniqueKeysWithValues: model.namedParameters().compactMap { name, slot -> (String, any ParameterSlot)? in
            guard let peftName = model.peftModuleName(of: name),
                  saved.contains(where: { peftName.hasPrefix($0 + ".") || peftName.contains("." + $0 + ".") }) else { return nil }
            return (peftName, slot)
        })
        var savedTensors: [(slot: any ParameterSlot, tensor: Tensor)] = []
        var matrices: [String: (down: Tensor?, up: Tensor?)] = [:]
        for key in checkpoint.names {
            if key.hasPrefix(keyPrefix), let slot = savedSlots[String(key.dropFirst(keyPrefix.count))] {
                let tensor = try checkpoint.tensor(key)
                guard tensor.shape == slot.tensor?.shape else {
                    throw CheckpointError(file: weightsPath, reason: "'\(key)' has shape \(tensor.shape), the model's \(slot.tensor?.shape ?? [])")
                }
                savedTensors.append((slot, tensor.converted(to: slot.tensor!.dtype)))
                continue
            }
            guard key.hasPrefix(keyPrefix), key.hasSuffix(".lora_A.weight") || key.hasSuffix(".lora_B.weight") else {
                throw CheckpointError(file: weightsPath, reason: "unexpected tensor '\(key)' (expected \(keyPrefix)….lora_A.weight / .lora_B.weight, or a parameter of modules_to_save)")
            }
            let name = String(key.dropFirst(keyPrefix.count).dropLast(".lora_A.weight".count))
            guard layers[name] != nil else {
                throw CheckpointError(file: weightsPath, reason: "'\(key)' names no linear layer of the \(type(of: model)) ('\(name)')")
            }
            let tensor = try checkpoint.tensor(key).converted(to: .float32)
            if key.hasSuffix(".lora_A.weight") { matrices[name, default: (nil, nil)].down = tensor } else { matrices[name, default: (nil, nil)].up = tensor }
        }
        let targeted: [String]
        switch config.targetModules {
        case .names(let names):
            targeted = layers.keys.filter { name in names.contains(String(name.split(separator: ".").last ?? "")) }
        case .pattern(let pattern):
            let expression: NSRegularExpression
            do { expression = try NSRegularExpression(pattern: "^(?:" + pattern + ")$") } catch {
                throw CheckpointError(file: configURL.path, reason: "target_modules '\(pattern)' is not a regular expression (\(error))")
            }
            targeted = layers.keys.filter { expression.firstMatch(in: $0, range: NSRange($0.startIndex..., in: $0)) != nil }
            lora.targetModules = Array(Set(targeted.map { String($0.split(separator: ".").last ?? "") })).sorted()
        }
        if let untargeted = matrices.keys.sorted().first(where: { !targeted.contains($0) }) {
            throw CheckpointError(file: weightsPath, reason: "'\(untargeted)' has adapter tensors but is not a target of target_modules")
        }
        let missing = targeted.filter { matrices[$0] == nil }.sorted()
        guard missing.isEmpty else {
            throw CheckpointError(file: weightsPath, reason: "no adapter for \(missing.count) targeted layer(s): \(missing.prefix(6).joined(separator: ", "))")
        }
        // Every pair is checked before any layer changes: a refused adapter leaves the model as it was.
        var adapters: [(Linear, LowRankAdapter)] = []
        for (name, pair) in matrices.sorted(by: { $0.key < $1.key }) {
            guard let down = pair.down, let up = pair.up else {
                throw CheckpointError(file: weightsPath, reason: "'\(name)' has lora_\(pair.down == nil ? "B" : "A") but not lora_\(pair.down == nil ? "A" : "B")")
            }
            let layer = layers[name]!
            guard down.shape == [lora.rank, layer.inFeatures], up.shape == [layer.outFeatures, lora.rank] else {
                throw CheckpointError(file: weightsPath, reason: "'\(name)': lora_A \(down.shape) and lora_B \(up.shape) do not fit the [\(layer.outFeatures), \(layer.inFeatures)] layer at r = \(lora.rank)")
            }
            guard layer.adapter == nil else { throw CheckpointError(file: weightsPath, reason: "'\(name)' already has an adapter") }
            adapters.append((layer, LowRankAdapter(down: down, up: up, alpha: lora.alpha, dropout: lora.dropout)))
        }
        for (layer, adapter) in adapters { layer.adapter = adapter }
        for (slot, tensor) in savedTensors { slot.tensor = tensor }
        return lora
    }
}
