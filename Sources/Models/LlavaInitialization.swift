import Checkpoint
import Foundation
import Layers
import TensorCore

/// LLaVA proper built on a Llama checkpoint: the data in `adapters/*-llava-clip.yaml`
/// (`architecture: llava`). A CLIP vision tower of the layout's shape (random: VLMKit downloads
/// nothing, so there is no pretrained CLIP to start from), LLaVA's projector, and the Llama itself.
public struct LlavaLayout: Codable, Sendable, Equatable {
    /// The value of `architecture` that selects this layout.
    public static let architectureName = "llava"

    /// The CLIP tower's `vision_config`, with transformers' defaults for what it leaves out.
    public var vision: CLIPVisionConfig
    /// `mlp2x` (LLaVA-1.5: `linear_1` → act → `linear_2`) or `linear` (LLaVA-1).
    public var projector: String
    /// `projector_hidden_act`.
    public var projectorHiddenAct: String
    /// `vision_feature_layer`: one index or several (concatenated); −2 is LLaVA-1.5's.
    public var visionFeatureLayers: [Int]
    /// `vision_feature_select_strategy`: `default` drops the class token, `full` keeps it.
    public var visionFeatureSelectStrategy: String
    /// The image processor pads to a square of the mean colour first (LLaVA-1.5's `expand2square`).
    public var padToSquare: Bool
    /// The standard deviation of fresh weights.
    public var initializerRange: Double

    public init(vision: CLIPVisionConfig, projector: String = "mlp2x", projectorHiddenAct: String = "gelu",
                visionFeatureLayers: [Int] = [-2], visionFeatureSelectStrategy: String = "default", padToSquare: Bool = true,
                initializerRange: Double = 0.02) {
        self.vision = vision
        self.projector = projector
        self.projectorHiddenAct = projectorHiddenAct
        self.visionFeatureLayers = visionFeatureLayers
        self.visionFeatureSelectStrategy = visionFeatureSelectStrategy
        self.padToSquare = padToSquare
        self.initializerRange = initializerRange
    }

    enum CodingKeys: String, CodingKey {
        case architecture, vision, projector, projectorHiddenAct = "projector_hidden_act"
        case visionFeatureLayer = "vision_feature_layer", visionFeatureSelectStrategy = "vision_feature_select_strategy"
        case padToSquare = "pad_to_square", initializerRange = "initializer_range"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let architecture = try c.decode(String.self, forKey: .architecture)
        guard architecture == Self.architectureName else {
            throw DecodingError.dataCorruptedError(forKey: .architecture, in: c, debugDescription: "architecture must be '\(Self.architectureName)', got '\(architecture)'")
        }
        vision = try c.decode(CLIPVisionConfig.self, forKey: .vision)
        projector = try c.decodeIfPresent(String.self, forKey: .projector) ?? "mlp2x"
        guard LlavaConfig.projectorTypes.contains(projector) else {
            throw DecodingError.dataCorruptedError(forKey: .projector, in: c,
                debugDescription: "projector must be one of \(LlavaConfig.projectorTypes.joined(separator: ", ")), got '\(projector)'")
        }
        projectorHiddenAct = try c.decodeIfPresent(String.self, forKey: .projectorHiddenAct) ?? "gelu"
        guard Activation(named: projectorHiddenAct) != nil else {
            throw DecodingError.dataCorruptedError(forKey: .projectorHiddenAct, in: c,
                debugDescription: "projector_hidden_act '\(projectorHiddenAct)' is not implemented (\(Activation.implementedNames))")
        }
        let layers: [Int]
        if let one = try? c.decode(Int.self, forKey: .visionFeatureLayer) { layers = [one] }
        else { layers = try c.decodeIfPresent([Int].self, forKey: .visionFeatureLayer) ?? [-2] }
        let depth = vision.numHiddenLayers
        guard !layers.isEmpty, layers.allSatisfy({ $0 >= -(depth + 1) && $0 <= depth }) else {
            throw DecodingError.dataCorruptedError(forKey: .visionFeatureLayer, in: c,
                debugDescription: "vision_feature_layer \(layers) must name hidden states 0…\(depth) (or −1…−\(depth + 1))")
        }
        visionFeatureLayers = layers
        visionFeatureSelectStrategy = try c.decodeIfPresent(String.self, forKey: .visionFeatureSelectStrategy) ?? "default"
        guard ["default", "full"].contains(visionFeatureSelectStrategy) else {
            throw DecodingError.dataCorruptedError(forKey: .visionFeatureSelectStrategy, in: c,
                debugDescription: "vision_feature_select_strategy must be 'default' or 'full', got '\(visionFeatureSelectStrategy)'")
        }
        padToSquare = try c.decodeIfPresent(Bool.self, forKey: .padToSquare) ?? true
        initializerRange = try c.decodeIfPresent(Double.self, forKey: .initializerRange) ?? 0.02
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.architectureName, forKey: .architecture)
        try c.encode(vision, forKey: .vision)
        try c.encode(projector, forKey: .projector)
        try c.encode(projectorHiddenAct, forKey: .projectorHiddenAct)
        if visionFeatureLayers.count == 1 { try c.encode(visionFeatureLayers[0], forKey: .visionFeatureLayer) }
        else { try c.encode(visionFeatureLayers, forKey: .visionFeatureLayer) }
        try c.encode(visionFeatureSelectStrategy, forKey: .visionFeatureSelectStrategy)
        try c.encode(padToSquare, forKey: .padToSquare)
        try c.encode(initializerRange, forKey: .initializerRange)
    }

    /// The `config.json` of LLaVA on `llama`: its text model with one more token, `<image>`
    /// (id = the text vocabulary size, as llava-hf's Llama 3 checkpoints add it), and an untied head.
    public func llavaConfig(for llama: LlamaConfig) -> LlavaConfig {
        var text = llama
        text.vocabSize = llama.vocabSize + 1
        text.tieWordEmbeddings = false
        let side = vision.imageSize / vision.patchSize
        return LlavaConfig(visionConfig: vision, textConfig: text, imageTokenIndex: llama.vocabSize, projectorHiddenAct: projectorHiddenAct,
                           visionFeatureLayers: visionFeatureLayers, visionFeatureSelectStrategy: visionFeatureSelectStrategy,
                           imageSeqLength: side * side + (visionFeatureSelectStrategy == "full" ? 1 : 0), projectorType: projector)
    }

    /// The CLIP image processor for the tower: shortest edge and centre crop to `image_size`,
    /// OpenAI's mean and deviation, and LLaVA-1.5's pad-to-square when ``padToSquare``.
    public var imageProcessorConfig: CLIPImageProcessorConfig {
        CLIPImageProcessorConfig(size: .init(shortestEdge: vision.imageSize),
                                 cropSize: .init(height: vision.imageSize, width: vision.imageSize), doPad: padToSquare)
    }
}

extension AdapterInitialization {
    /// Builds LLaVA (`LlavaForConditionalGeneration`, llava-hf's layout) in `output` from a Llama
    /// checkpoint: a fresh CLIP tower and projector drawn from `seed`, and the text model's weights
    /// as they are, with one row more in the embedding table and the head for `<image>`, at the
    /// mean of the rows (transformers' `resize_token_embeddings`); a tied head is written as its own
    /// tensor. Writes `model.safetensors`, `config.json`, the CLIP `preprocessor_config.json` and the
    /// text model's ``companionFiles``.
    /// - Returns: the configuration written.
    @discardableResult
    public static func initializeLlava(textModel: URL, layout: LlavaLayout, output: URL, seed: UInt64 = 0) throws -> LlavaConfig {
        let llama = try LlamaForCausalLM.load(directory: textModel)
        let config = layout.llavaConfig(for: llama.config)
        let model = LlavaForConditionalGeneration(config: config, factory: ParameterFactory(.random(seed: seed, standardDeviation: layout.initializerRange)))
        var tensors = Dictionary(uniqueKeysWithValues: model.parameters().map { ($0.name, $0.tensor) })
        let text = Dictionary(uniqueKeysWithValues: llama.parameters().map { ($0.name, $0.tensor) })
        for (name, tensor) in text where name != "lm_head.weight" { tensors["language_model." + name] = tensor }
        let embedding = text["model.embed_tokens.weight"]!
        tensors["language_model.model.embed_tokens.weight"] = withMeanRows(embedding, count: 1)
        tensors["language_model.lm_head.weight"] = withMeanRows(text["lm_head.weight"] ?? embedding, count: 1)
        try model.loadParameters(tensors, source: textModel.path)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        try model.save(to: output)
        try AtomicFile.write(try layout.imageProcessorConfig.jsonData(), to: output.appendingPathComponent(CLIPImageProcessorConfig.fileName))
        try copyCompanions(textModel: textModel, output: output)
        return config
    }
}
