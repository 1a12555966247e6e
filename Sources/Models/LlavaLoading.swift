import Checkpoint
import Foundation
import Layers
import TensorCore

extension LlavaForConditionalGeneration {
    /// Rewrites a checkpoint name from any layout transformers has written to llava-hf's published
    /// one (the model's own names):
    ///
    /// - published (llava-hf): `vision_tower.vision_model.*`, `multi_modal_projector.*`,
    ///   `language_model.model.*`, `language_model.lm_head.*` — unchanged;
    /// - transformers ≥ 4.52 / 5: `model.vision_tower.*`, `model.multi_modal_projector.*`,
    ///   `model.language_model.*`, `lm_head.*`;
    /// - transformers 5 also drops `vision_model.` inside the tower (`vision_tower.embeddings.*`).
    public static func publishedName(_ name: String) -> String {
        var name = name
        for (from, to) in [("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                           ("model.multi_modal_projector.", "multi_modal_projector."), ("model.vision_tower.", "vision_tower.")]
        where name.hasPrefix(from) {
            name = to + name.dropFirst(from.count)
            break
        }
        if name.hasPrefix("vision_tower."), !name.hasPrefix("vision_tower.vision_model.") {
            name = "vision_tower.vision_model." + name.dropFirst("vision_tower.".count)
        }
        return name
    }

    /// Loads a Hugging Face LLaVA checkpoint directory (`config.json` and `model.safetensors` or
    /// shards), in llava-hf's published layout or transformers 5's `model.*` one.
    ///
    /// Weights are memory-mapped and keep their stored dtype; the model is frozen (see
    /// ``setTrainable(_:)``). Loading is strict: a missing, unexpected or mis-shaped tensor is an
    /// error listing the names. Non-persistent buffers (`position_ids`, `rotary_emb.inv_freq`) that
    /// old checkpoints carry are ignored.
    /// - Throws: ``CheckpointError`` naming `config.json` for an activation VLMKit does not implement.
    public static func load(directory: URL) throws -> LlavaForConditionalGeneration {
        let configURL = directory.appendingPathComponent("config.json")
        let config = try LlavaConfig.load(from: configURL)
        for (field, name) in [("projector_hidden_act", config.projectorHiddenAct), ("vision_config.hidden_act", config.visionConfig.hiddenAct)]
        where Activation(named: name) == nil {
            throw CheckpointError(file: configURL.path, reason: "\(field) '\(name)' is not implemented (VLMKit implements \(Activation.implementedNames))")
        }
        let model = LlavaForConditionalGeneration(config: config, factory: ParameterFactory(.uninitialized))
        let checkpoint = try SafetensorsCheckpoint(path: try LlamaForCausalLM.weightsPath(in: directory))
        var tensors: [String: Tensor] = [:]
        for name in checkpoint.names where !name.hasSuffix("rotary_emb.inv_freq") && !name.hasSuffix("embeddings.position_ids") {
            tensors[publishedName(name)] = try checkpoint.tensor(name)
        }
        try model.loadParameters(tensors, source: directory.path)
        return model
    }

    /// A published checkpoint name in transformers 5's layout (`model.vision_tower.*` without
    /// `vision_model.`, `model.multi_modal_projector.*`, `model.language_model.*`, `lm_head.*`).
    public static func transformers5Name(_ published: String) -> String {
        for (from, to) in [("vision_tower.vision_model.", "model.vision_tower."), ("multi_modal_projector.", "model.multi_modal_projector."),
                           ("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head.")]
        where published.hasPrefix(from) {
            return to + published.dropFirst(from.count)
        }
        return published
    }

    /// Writes `config.json` and `model.safetensors` (each tensor in its dtype) into `directory`,
    /// creating it; each file is written atomically. A tied head is not written. Names are
    /// llava-hf's published ones, or transformers 5's with `layout: .transformers5`; transformers
    /// loads both.
    public func save(to directory: URL, layout: LlavaCheckpointLayout = .published) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let tensors = Dictionary(uniqueKeysWithValues: parameters().map {
            (layout == .published ? $0.name : Self.transformers5Name($0.name), $0.tensor.detached())
        })
        try writeSafetensors(tensors: tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent("model.safetensors"))
        try AtomicFile.write(try config.jsonData(), to: directory.appendingPathComponent("config.json"))
    }
}

/// The weight names a LLaVA checkpoint is written with.
public enum LlavaCheckpointLayout: Sendable {
    /// llava-hf's: `vision_tower.vision_model.*`, `multi_modal_projector.*`, `language_model.model.*`, `language_model.lm_head.*`.
    case published
    /// transformers 5's: `model.vision_tower.*`, `model.multi_modal_projector.*`, `model.language_model.*`, `lm_head.*`.
    case transformers5
}

// MARK: - Training

/// Groups of parameters that LLaVA's training stages select by name.
public enum LlavaParameterGroup: String, CaseIterable, Sendable {
    /// The CLIP vision tower (frozen in both of LLaVA's stages).
    case visionTower
    /// The multi-modal projector (trained in both stages).
    case projector
    /// The Llama text model: embeddings, decoder layers, final norm, head (trained in stage 2).
    /// The trainer also asks for it as `textModel`, the name every vision model gives its Llama
    /// (a stage's `language_model: full` trains it, `lora` puts adapters on its linear layers).
    case languageModel

    /// The group name the trainer uses for any model's Llama text model.
    public static let textModelAlias = "textModel"
}

extension LlavaForConditionalGeneration {
    /// Name patterns (for `freeze(matching:)` / `unfreeze(matching:)`) of a parameter group.
    public func patterns(for group: LlavaParameterGroup) -> [String] {
        switch group {
        case .visionTower: ["vision_tower.**"]
        case .projector: ["multi_modal_projector.**"]
        case .languageModel: ["language_model.**"]
        }
    }

    /// Freezes everything, then makes the parameters of `groups` trainable (owned float32 copies
    /// that require gradients).
    /// - Returns: the names made trainable.
    @discardableResult
    public func setTrainable(_ groups: [LlavaParameterGroup]) -> [String] {
        makeTrainable(matching: groups.flatMap { patterns(for: $0) })
    }
}

extension LlavaForConditionalGeneration: TrainableLanguageModel {
    /// `inputs.pixelValues` is `[I, C, H, W]`: every image of the batch, in token order.
    public func hiddenStates(_ inputs: ModelInputs) -> Tensor {
        ensure(inputs.aspectRatioIDs == nil && inputs.aspectRatioMask == nil && inputs.crossAttentionMask == nil,
               "LLaVA takes no aspect-ratio ids, tile mask or cross-attention mask (those are Mllama's)")
        ensure(inputs.imageRowGroups == 1, "LLaVA encodes every image it is given (imageRowGroups must be 1)")
        return hiddenStates(inputIds: inputs.inputIDs, attentionMask: inputs.attentionMask, pixelValues: inputs.pixelValues)
    }

    public func logits(hiddenStates: Tensor) -> Tensor { languageModel.logits(hiddenStates: hiddenStates) }

    public var parameterGroupNames: [String] { LlavaParameterGroup.allCases.map(\.rawValue) }

    /// Also answers `textModel` (``LlavaParameterGroup/textModelAlias``) with `languageModel`'s patterns.
    public func parameterPatterns(forGroup name: String) -> [String]? {
        if name == LlavaParameterGroup.textModelAlias { return patterns(for: .languageModel) }
        return LlavaParameterGroup(rawValue: name).map { patterns(for: $0) }
    }

    public func setActivationCheckpointing(_ enabled: Bool) {
        languageModel.setActivationCheckpointing(enabled)
        visionTower.visionModel.encoder.activationCheckpointing = enabled
    }
}

// MARK: - Generation

extension LlavaForConditionalGeneration: IncrementalDecoder {
    /// Text-only decoding.
    public func decode(_ ids: Tensor, attentionMask: Tensor, cache: KVCache) -> Tensor {
        let hidden = hiddenStates(inputIds: ids, attentionMask: attentionMask, cache: cache)   // (B, T, D)
        return languageModel.logits(hiddenStates: hidden.slice(axis: 1, (hidden.shape[1] - 1)..<hidden.shape[1]))
    }

    /// A decoder for ``generate(with:prompts:maxNewTokens:sampling:stopTokens:padToken:onStep:)``
    /// that sees these images `[I, C, H, W]` (in the order their tokens appear in the prompts): the
    /// prompt step splices them in; later steps read the KV cache.
    public func conditioned(pixelValues: Tensor) -> LlavaImageDecoder { LlavaImageDecoder(model: self, pixelValues: pixelValues) }
}

/// LLaVA with a fixed set of images, for ``generate(with:prompts:maxNewTokens:sampling:stopTokens:padToken:onStep:)``.
public final class LlavaImageDecoder: IncrementalDecoder {
    public let model: LlavaForConditionalGeneration
    public let pixelValues: Tensor

    init(model: LlavaForConditionalGeneration, pixelValues: Tensor) {
        self.model = model
        self.pixelValues = pixelValues
    }

    public func makeCache(batch: Int, capacity: Int) -> KVCache { model.makeCache(batch: batch, capacity: capacity) }

    public func decode(_ ids: Tensor, attentionMask: Tensor, cache: KVCache) -> Tensor {
        let isPrompt = cache.length == 0
        let hidden = model.hiddenStates(inputIds: ids, attentionMask: attentionMask, pixelValues: isPrompt ? pixelValues : nil,
                                        cache: cache)                                           // (B, T, D)
        return model.languageModel.logits(hiddenStates: hidden.slice(axis: 1, (hidden.shape[1] - 1)..<hidden.shape[1]))
    }
}
