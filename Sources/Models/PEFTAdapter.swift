import Checkpoint
import Foundation
import Layers
import TensorCore

// PEFT's LoRA adapter files for a Llama text model: `adapter_config.json` (`LoraConfig`) and
// `adapter_model.safetensors` with keys `base_model.model.<the Llama's module>.lora_A.weight` /
// `.lora_B.weight` — what `PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), dir)`
// reads. A vision model's adapters are written under its text tower's names as the base Llama
// has them (``LlamaTextTower``), so the files adapt the Llama the vision model was built on.

/// A model whose text tower is a Llama checkpoint's layers under other names.
public protocol LlamaTextTower: Module {
    /// The base Llama's name (`model.layers.2.self_attn.q_proj`) of one of this model's modules,
    /// or nil for a module that is not the Llama's.
    func llamaName(of name: String) -> String?
}

extension LlamaForCausalLM: LlamaTextTower {
    public func llamaName(of name: String) -> String? { name }
}

extension TokenStreamModel: LlamaTextTower {
    public func llamaName(of name: String) -> String? {
        name.hasPrefix("language_model.") ? String(name.dropFirst("language_model.".count)) : nil
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

/// PEFT's `adapter_config.json` for a LoRA adapter of a causal language model (`LoraConfig`).
public struct PEFTAdapterConfig: Codable, Sendable, Equatable {
    public var peftType = "LORA"
    public var taskType = "CAUSAL_LM"
    public var r: Int
    public var loraAlpha: Double
    public var loraDropout: Double
    public var targetModules: [String]
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

    public init(lora: LoRAConfiguration, baseModel: String?) {
        r = lora.rank
        loraAlpha = lora.alpha
        loraDropout = lora.dropout
        targetModules = lora.targetModules
        baseModelNameOrPath = baseModel
    }

    /// Reads the fields VLMKit uses, with PEFT's defaults for absent ones; `target_modules` may be a
    /// list or one string (PEFT's regular-expression form is not read).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        peftType = try c.decodeIfPresent(String.self, forKey: .peftType) ?? "LORA"
        taskType = try c.decodeIfPresent(String.self, forKey: .taskType) ?? "CAUSAL_LM"
        r = try c.decodeIfPresent(Int.self, forKey: .r) ?? 8
        loraAlpha = try c.decodeIfPresent(Double.self, forKey: .loraAlpha) ?? 8
        loraDropout = try c.decodeIfPresent(Double.self, forKey: .loraDropout) ?? 0
        if let list = try? c.decode([String].self, forKey: .targetModules) {
            targetModules = list
        } else {
            targetModules = [try c.decode(String.self, forKey: .targetModules)]
        }
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
        guard modulesToSave?.isEmpty ?? true else { throw refuse("modules_to_save", "\(modulesToSave!)") }
        // rsLoRA scales by α/√r: the same update as α·√r over r.
        let alpha = useRSLoRA ? loraAlpha * Double(r).squareRoot() : loraAlpha
        return LoRAConfiguration(rank: r, alpha: alpha, dropout: loraDropout, targetModules: targetModules)
    }
}

/// PEFT's LoRA adapter files.
public enum PEFTAdapter {
    public static let weightsFile = "adapter_model.safetensors"
    public static let configFile = "adapter_config.json"
    /// What PEFT's `PeftModelForCausalLM` puts before the base model's own names.
    public static let keyPrefix = "base_model.model."

    /// The adapter tensors of `model` under PEFT's names for its base Llama.
    public static func tensors(of model: any LlamaTextTower) throws -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for (name, layer) in model.lowRankAdaptedLayers() {
            guard let adapter = layer.adapter, let llamaName = model.llamaName(of: name) else {
                throw CheckpointError(file: name, reason: "this adapted layer is not one of the base Llama's: PEFT files cannot name it")
            }
            tensors[keyPrefix + llamaName + ".lora_A.weight"] = adapter.down.weight.detached()
            tensors[keyPrefix + llamaName + ".lora_B.weight"] = adapter.up.weight.detached()
        }
        return tensors
    }

    /// Writes `adapter_model.safetensors` and `adapter_config.json` for the adapters of `model`
    /// into `directory` (created), each file atomically.
    /// - Parameter baseModel: `base_model_name_or_path`: where the base Llama is.
    public static func write(from model: any LlamaTextTower, configuration: LoRAConfiguration, baseModel: String?, to directory: URL) throws {
        let tensors = try tensors(of: model)
        guard !tensors.isEmpty else { throw CheckpointError(file: directory.path, reason: "the model has no LoRA adapters to write") }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try writeSafetensors(tensors: tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent(weightsFile))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let config = PEFTAdapterConfig(lora: configuration, baseModel: baseModel)
        try AtomicFile.write(try encoder.encode(config), to: directory.appendingPathComponent(configFile))
    }

    /// Reads a PEFT LoRA adapter folder and attaches its adapters to `llama` (frozen, as loaded).
    /// Strict: a tensor that names no linear layer of the model, a layer with only one of its two
    /// matrices, a shape that does not fit, or a target layer without tensors is an error naming them.
    /// - Returns: the adapter's configuration.
    @discardableResult
    public static func load(directory: URL, into llama: LlamaForCausalLM) throws -> LoRAConfiguration {
        let configURL = directory.appendingPathComponent(configFile)
        guard let data = FileManager.default.contents(atPath: configURL.path) else {
            throw CheckpointError(file: configURL.path, reason: "missing: a PEFT adapter folder needs \(configFile)")
        }
        let config: PEFTAdapterConfig
        do { config = try JSONDecoder().decode(PEFTAdapterConfig.self, from: data) } catch {
            throw CheckpointError(file: configURL.path, reason: "not a PEFT adapter config (\(error))")
        }
        let lora = try config.loraConfiguration(file: configURL.path)
        let weightsPath = directory.appendingPathComponent(weightsFile).path
        let checkpoint = try SafetensorsCheckpoint(path: weightsPath)
        let layers = Dictionary(uniqueKeysWithValues: llama.namedLinearLayers().map { ($0.name, $0.layer) })
        var matrices: [String: (down: Tensor?, up: Tensor?)] = [:]
        for key in checkpoint.names {
            guard key.hasPrefix(keyPrefix), key.hasSuffix(".lora_A.weight") || key.hasSuffix(".lora_B.weight") else {
                throw CheckpointError(file: weightsPath, reason: "unexpected tensor '\(key)' (expected \(keyPrefix)….lora_A.weight / .lora_B.weight)")
            }
            let name = String(key.dropFirst(keyPrefix.count).dropLast(".lora_A.weight".count))
            guard layers[name] != nil else {
                throw CheckpointError(file: weightsPath, reason: "'\(key)' names no linear layer of the \(llama.config.numHiddenLayers)-layer Llama ('\(name)')")
            }
            let tensor = try checkpoint.tensor(key).converted(to: .float32)
            if key.hasSuffix(".lora_A.weight") { matrices[name, default: (nil, nil)].down = tensor } else { matrices[name, default: (nil, nil)].up = tensor }
        }
        let targeted = layers.keys.filter { name in lora.targetModules.contains(String(name.split(separator: ".").last ?? "")) }
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
        return lora
    }
}
