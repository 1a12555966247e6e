import Foundation

/// The `config.json` of a LLaVA checkpoint (`model_type: "llava"`): a CLIP vision tower, a small
/// MLP projector and a Llama text decoder.
///
/// `projector_type` is VLMKit's own field (LLaVA's `mm_projector_type`): absent or `mlp2x` is
/// transformers' two-layer projector; `linear` is LLaVA-1's single linear layer, which transformers
/// has no class for (such a checkpoint only loads in VLMKit).
///
/// `vision_config` and `text_config` are required; inside them fields default as in transformers'
/// `CLIPVisionConfig` / `LlamaConfig`. llava-hf's published LLaVA-1.5 configs leave the text
/// model's width and depth out (transformers fills in `LlamaConfig`'s defaults, Llama 2 7B's), so
/// here too a `text_config` without them gets `hidden_size` 4096, `intermediate_size` 11008,
/// `num_hidden_layers` 32, `num_attention_heads` 32 and `vocab_size` 32000; strict weight loading
/// then catches a checkpoint of another size.
public struct LlavaConfig: HuggingFaceConfiguration, Equatable {
    public static let fileName = "config.json"

    public var visionConfig: CLIPVisionConfig
    public var textConfig: LlamaConfig
    public var imageTokenIndex: Int
    public var projectorHiddenAct: String
    /// The CLIP layer(s) whose hidden states feed the projector (negative counts from the end;
    /// transformers writes one integer, or a list when several layers are concatenated).
    public var visionFeatureLayers: [Int]
    /// `default` drops the CLS token, `full` keeps it.
    public var visionFeatureSelectStrategy: String
    public var imageSeqLength: Int
    public var multimodalProjectorBias: Bool
    /// `mlp2x` (transformers' `linear_1` → act → `linear_2`) or `linear` (`linear_1` only).
    public var projectorType: String
    public var torchDType: String?

    /// The projector types VLMKit builds.
    public static let projectorTypes = ["mlp2x", "linear"]

    public init(visionConfig: CLIPVisionConfig, textConfig: LlamaConfig, imageTokenIndex: Int = 32_000,
                projectorHiddenAct: String = "gelu", visionFeatureLayers: [Int] = [-2],
                visionFeatureSelectStrategy: String = "default", imageSeqLength: Int = 576,
                multimodalProjectorBias: Bool = true, projectorType: String = "mlp2x", torchDType: String? = nil) {
        self.visionConfig = visionConfig
        self.textConfig = textConfig
        self.imageTokenIndex = imageTokenIndex
        self.projectorHiddenAct = projectorHiddenAct
        self.visionFeatureLayers = visionFeatureLayers
        self.visionFeatureSelectStrategy = visionFeatureSelectStrategy
        self.imageSeqLength = imageSeqLength
        self.multimodalProjectorBias = multimodalProjectorBias
        self.projectorType = projectorType
        self.torchDType = torchDType
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", visionConfig = "vision_config", textConfig = "text_config"
        case imageTokenIndex = "image_token_index", projectorHiddenAct = "projector_hidden_act"
        case visionFeatureLayer = "vision_feature_layer", visionFeatureSelectStrategy = "vision_feature_select_strategy"
        case imageSeqLength = "image_seq_length", multimodalProjectorBias = "multimodal_projector_bias"
        case projectorType = "projector_type"
        case dtype, torchDType = "torch_dtype"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        visionConfig = try c.decode(CLIPVisionConfig.self, forKey: .visionConfig)
        textConfig = try Self.decodeTextConfig(c)
        if textConfig.modelType != "llama" {
            throw DecodingError.dataCorruptedError(forKey: .textConfig, in: c,
                debugDescription: "text_config has model_type '\(textConfig.modelType)'; VLMKit reads LLaVA with a 'llama' text model")
        }
        imageTokenIndex = try c.decodeIfPresent(Int.self, forKey: .imageTokenIndex) ?? 32_000
        projectorHiddenAct = try c.decodeIfPresent(String.self, forKey: .projectorHiddenAct) ?? "gelu"
        visionFeatureLayers = try c.decodeTokenIDs(forKey: .visionFeatureLayer) ?? [-2]
        visionFeatureSelectStrategy = try c.decodeIfPresent(String.self, forKey: .visionFeatureSelectStrategy) ?? "default"
        guard ["default", "full"].contains(visionFeatureSelectStrategy) else {
            throw DecodingError.dataCorruptedError(forKey: .visionFeatureSelectStrategy, in: c,
                debugDescription: "vision_feature_select_strategy must be 'default' or 'full', got '\(visionFeatureSelectStrategy)'")
        }
        imageSeqLength = try c.decodeIfPresent(Int.self, forKey: .imageSeqLength) ?? 576
        multimodalProjectorBias = try c.decodeIfPresent(Bool.self, forKey: .multimodalProjectorBias) ?? true
        projectorType = try c.decodeIfPresent(String.self, forKey: .projectorType) ?? "mlp2x"
        guard Self.projectorTypes.contains(projectorType) else {
            throw DecodingError.dataCorruptedError(forKey: .projectorType, in: c,
                debugDescription: "projector_type must be 'mlp2x' or 'linear', got '\(projectorType)'")
        }
        torchDType = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDType)
    }

    /// transformers' `LlamaConfig` defaults for the fields ``LlamaConfig`` otherwise requires.
    static let textConfigSizeDefaults: [String: Int] = [
        "vocab_size": 32_000, "hidden_size": 4096, "intermediate_size": 11_008, "num_hidden_layers": 32, "num_attention_heads": 32,
    ]

    private static func decodeTextConfig(_ c: KeyedDecodingContainer<CodingKeys>) throws -> LlamaConfig {
        var fields = try c.decode([String: _LooseJSON].self, forKey: .textConfig)
        for (key, value) in textConfigSizeDefaults where fields[key] == nil { fields[key] = .integer(value) }
        do {
            return try JSONDecoder().decode(LlamaConfig.self, from: JSONEncoder().encode(fields))
        } catch let error as DecodingError {
            throw DecodingError.dataCorruptedError(forKey: .textConfig, in: c, debugDescription: "\(Self.describe(error))")
        }
    }

    /// A nested decoding error as one line: the field path and what is wrong.
    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): return "missing required field '\(key.stringValue)'"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return (path.isEmpty ? "" : "\(path): ") + context.debugDescription
        @unknown default: return "\(error)"
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("llava", forKey: .modelType)
        try c.encode(visionConfig, forKey: .visionConfig)
        try c.encode(textConfig, forKey: .textConfig)
        try c.encode(imageTokenIndex, forKey: .imageTokenIndex)
        try c.encode(projectorHiddenAct, forKey: .projectorHiddenAct)
        try c.encodeTokenIDs(visionFeatureLayers, forKey: .visionFeatureLayer)
        try c.encode(visionFeatureSelectStrategy, forKey: .visionFeatureSelectStrategy)
        try c.encode(imageSeqLength, forKey: .imageSeqLength)
        try c.encode(multimodalProjectorBias, forKey: .multimodalProjectorBias)
        // Absent means transformers' two-layer projector, so a transformers config stays one.
        if projectorType != "mlp2x" { try c.encode(projectorType, forKey: .projectorType) }
        try c.encodeIfPresent(torchDType, forKey: .dtype)
    }
}

/// Any JSON value, to complete a nested configuration before decoding it.
private enum _LooseJSON: Codable {
    case null, bool(Bool), integer(Int), number(Double), string(String), list([_LooseJSON]), object([String: _LooseJSON])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let value = try? c.decode(Bool.self) { self = .bool(value) }
        else if let value = try? c.decode(Int.self) { self = .integer(value) }
        else if let value = try? c.decode(Double.self) { self = .number(value) }
        else if let value = try? c.decode(String.self) { self = .string(value) }
        else if let value = try? c.decode([_LooseJSON].self) { self = .list(value) }
        else { self = .object(try c.decode([String: _LooseJSON].self)) }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let value): try c.encode(value)
        case .integer(let value): try c.encode(value)
        case .number(let value): try c.encode(value)
        case .string(let value): try c.encode(value)
        case .list(let value): try c.encode(value)
        case .object(let value): try c.encode(value)
        }
    }
}

/// A CLIP vision tower's configuration (`model_type: "clip_vision_model"`), defaults as transformers'
/// `CLIPVisionConfig`.
public struct CLIPVisionConfig: Codable, Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var imageSize: Int
    public var patchSize: Int
    public var numChannels: Int
    public var layerNormEps: Double
    /// `quick_gelu` for OpenAI's CLIP.
    public var hiddenAct: String
    public var projectionDim: Int

    public init(hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
                imageSize: Int = 224, patchSize: Int = 32, numChannels: Int = 3, layerNormEps: Double = 1e-5,
                hiddenAct: String = "quick_gelu", projectionDim: Int = 512) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.numChannels = numChannels
        self.layerNormEps = layerNormEps
        self.hiddenAct = hiddenAct
        self.projectionDim = projectionDim
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case imageSize = "image_size", patchSize = "patch_size", numChannels = "num_channels"
        case layerNormEps = "layer_norm_eps", hiddenAct = "hidden_act", projectionDim = "projection_dim"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? 224
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? 32
        numChannels = try c.decodeIfPresent(Int.self, forKey: .numChannels) ?? 3
        layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps) ?? 1e-5
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "quick_gelu"
        projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim) ?? 512
        guard numAttentionHeads > 0, hiddenSize % numAttentionHeads == 0 else {
            throw DecodingError.dataCorruptedError(forKey: .numAttentionHeads, in: c,
                debugDescription: "num_attention_heads (\(numAttentionHeads)) must divide hidden_size (\(hiddenSize))")
        }
        guard patchSize > 0, imageSize % patchSize == 0 else {
            throw DecodingError.dataCorruptedError(forKey: .patchSize, in: c,
                debugDescription: "patch_size (\(patchSize)) must divide image_size (\(imageSize))")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("clip_vision_model", forKey: .modelType)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(numChannels, forKey: .numChannels)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(projectionDim, forKey: .projectionDim)
    }
}
