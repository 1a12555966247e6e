/// The `config.json` of a Llama 3.2 Vision checkpoint (`model_type: "mllama"`).
///
/// `text_config` and `vision_config` are required; inside them, fields default as in
/// transformers' `MllamaTextConfig` / `MllamaVisionConfig` (which describe the published 11B model),
/// except the width and depth fields, which are required (see ``LlamaConfig``).
public struct MllamaConfig: HuggingFaceConfiguration, Equatable {
    public static let fileName = "config.json"

    public var textConfig: MllamaTextConfig
    public var visionConfig: MllamaVisionConfig
    /// The id of the `<|image|>` token (128256 in the published model).
    public var imageTokenIndex: Int
    public var torchDType: String?

    public init(textConfig: MllamaTextConfig, visionConfig: MllamaVisionConfig, imageTokenIndex: Int = 128_256,
                torchDType: String? = nil) {
        self.textConfig = textConfig
        self.visionConfig = visionConfig
        self.imageTokenIndex = imageTokenIndex
        self.torchDType = torchDType
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", textConfig = "text_config", visionConfig = "vision_config"
        case imageTokenIndex = "image_token_index", dtype, torchDType = "torch_dtype", architectures
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        textConfig = try c.decode(MllamaTextConfig.self, forKey: .textConfig)
        visionConfig = try c.decode(MllamaVisionConfig.self, forKey: .visionConfig)
        imageTokenIndex = try c.decodeIfPresent(Int.self, forKey: .imageTokenIndex) ?? 128_256
        torchDType = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDType)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("mllama", forKey: .modelType)
        try c.encode(["MllamaForConditionalGeneration"], forKey: .architectures)
        try c.encode(textConfig, forKey: .textConfig)
        try c.encode(visionConfig, forKey: .visionConfig)
        try c.encode(imageTokenIndex, forKey: .imageTokenIndex)
        try c.encodeIfPresent(torchDType, forKey: .dtype)
    }
}

/// Mllama's language tower: Llama fields plus the layers that cross-attend to the image.
///
/// Llama's fields are reached directly (`textConfig.hiddenSize`) through ``llama``.
@dynamicMemberLookup
public struct MllamaTextConfig: Codable, Sendable, Equatable {
    /// The Llama fields (`model_type` is `mllama_text_model`).
    public var llama: LlamaConfig
    /// Indices of the decoder layers that are cross-attention layers.
    public var crossAttentionLayers: [Int]

    /// transformers' default cross-attention layers (the 11B model's).
    public static let defaultCrossAttentionLayers = [3, 8, 13, 18, 23, 28, 33, 38]

    public init(llama: LlamaConfig, crossAttentionLayers: [Int]) {
        var llama = llama
        llama.modelType = "mllama_text_model"
        self.llama = llama
        self.crossAttentionLayers = crossAttentionLayers
    }

    public subscript<Value>(dynamicMember keyPath: WritableKeyPath<LlamaConfig, Value>) -> Value {
        get { llama[keyPath: keyPath] }
        set { llama[keyPath: keyPath] = newValue }
    }

    enum CodingKeys: String, CodingKey { case crossAttentionLayers = "cross_attention_layers" }

    public init(from decoder: Decoder) throws {
        let defaults = LlamaConfig.Defaults(
            modelType: "mllama_text_model", numKeyValueHeads: 8, maxPositionEmbeddings: 131_072, rmsNormEps: 1e-5,
            ropeTheta: 500_000, bosTokenId: 128_000, eosTokenIds: [128_001], padTokenId: 128_004)
        llama = try LlamaConfig(from: decoder, defaults: defaults)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        crossAttentionLayers = try c.decodeIfPresent([Int].self, forKey: .crossAttentionLayers) ?? Self.defaultCrossAttentionLayers
        if let bad = crossAttentionLayers.first(where: { $0 < 0 || $0 >= llama.numHiddenLayers }) {
            throw DecodingError.dataCorruptedError(forKey: .crossAttentionLayers, in: c,
                debugDescription: "cross_attention_layers holds \(bad), outside the \(llama.numHiddenLayers) layers")
        }
    }

    public func encode(to encoder: Encoder) throws {
        try llama.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(crossAttentionLayers, forKey: .crossAttentionLayers)
    }
}

/// Mllama's vision tower: a tiled ViT with a local and a global encoder.
public struct MllamaVisionConfig: Codable, Sendable, Equatable {
    public var hiddenSize: Int
    public var hiddenAct: String
    /// Layers of the local encoder.
    public var numHiddenLayers: Int
    /// Layers of the gated global encoder that follows it.
    public var numGlobalLayers: Int
    public var attentionHeads: Int
    public var intermediateSize: Int
    public var imageSize: Int
    public var patchSize: Int
    public var numChannels: Int
    public var maxNumTiles: Int
    /// Local-encoder layers whose outputs are concatenated into the vision output.
    public var intermediateLayersIndices: [Int]
    /// Width of the vision output the projector reads (hidden × (1 + intermediate layers)).
    public var visionOutputDim: Int
    public var normEps: Double
    /// Tile grids (rows, columns) an image may be cut into.
    public var supportedAspectRatios: [[Int]]

    public static let defaultSupportedAspectRatios = [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]

    /// Every tile grid of at most `maxNumTiles` tiles, in Meta's order (`get_all_supported_aspect_ratios`):
    /// for 4 tiles, ``defaultSupportedAspectRatios``.
    public static func supportedAspectRatios(maxNumTiles: Int) -> [[Int]] {
        guard maxNumTiles >= 1 else { return [] }
        return (1...maxNumTiles).flatMap { width in
            (1...maxNumTiles).filter { width * $0 <= maxNumTiles }.map { [width, $0] }
        }
    }

    public init(hiddenSize: Int, numHiddenLayers: Int, numGlobalLayers: Int = 8, attentionHeads: Int,
                intermediateSize: Int, imageSize: Int = 448, patchSize: Int = 14, numChannels: Int = 3,
                maxNumTiles: Int = 4, intermediateLayersIndices: [Int] = [3, 7, 15, 23, 30], visionOutputDim: Int = 7680,
                normEps: Double = 1e-5, hiddenAct: String = "gelu",
                supportedAspectRatios: [[Int]] = MllamaVisionConfig.defaultSupportedAspectRatios) {
        self.hiddenSize = hiddenSize
        self.hiddenAct = hiddenAct
        self.numHiddenLayers = numHiddenLayers
        self.numGlobalLayers = numGlobalLayers
        self.attentionHeads = attentionHeads
        self.intermediateSize = intermediateSize
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.numChannels = numChannels
        self.maxNumTiles = maxNumTiles
        self.intermediateLayersIndices = intermediateLayersIndices
        self.visionOutputDim = visionOutputDim
        self.normEps = normEps
        self.supportedAspectRatios = supportedAspectRatios
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", hiddenSize = "hidden_size", hiddenAct = "hidden_act"
        case numHiddenLayers = "num_hidden_layers", numGlobalLayers = "num_global_layers"
        case attentionHeads = "attention_heads", intermediateSize = "intermediate_size", imageSize = "image_size"
        case patchSize = "patch_size", numChannels = "num_channels", maxNumTiles = "max_num_tiles"
        case intermediateLayersIndices = "intermediate_layers_indices", visionOutputDim = "vision_output_dim"
        case normEps = "norm_eps", supportedAspectRatios = "supported_aspect_ratios"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        attentionHeads = try c.decode(Int.self, forKey: .attentionHeads)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "gelu"
        numGlobalLayers = try c.decodeIfPresent(Int.self, forKey: .numGlobalLayers) ?? 8
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? 448
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? 14
        numChannels = try c.decodeIfPresent(Int.self, forKey: .numChannels) ?? 3
        maxNumTiles = try c.decodeIfPresent(Int.self, forKey: .maxNumTiles) ?? 4
        intermediateLayersIndices = try c.decodeIfPresent([Int].self, forKey: .intermediateLayersIndices) ?? [3, 7, 15, 23, 30]
        visionOutputDim = try c.decodeIfPresent(Int.self, forKey: .visionOutputDim) ?? 7680
        normEps = try c.decodeIfPresent(Double.self, forKey: .normEps) ?? 1e-5
        supportedAspectRatios = try c.decodeIfPresent([[Int]].self, forKey: .supportedAspectRatios) ?? Self.defaultSupportedAspectRatios
        guard hiddenSize > 0, attentionHeads > 0, hiddenSize % attentionHeads == 0 else {
            throw DecodingError.dataCorruptedError(forKey: .attentionHeads, in: c,
                debugDescription: "attention_heads (\(attentionHeads)) must divide hidden_size (\(hiddenSize))")
        }
        guard patchSize > 0, imageSize % patchSize == 0 else {
            throw DecodingError.dataCorruptedError(forKey: .patchSize, in: c,
                debugDescription: "patch_size (\(patchSize)) must divide image_size (\(imageSize))")
        }
        if let bad = supportedAspectRatios.first(where: { $0.count != 2 || $0.contains { $0 < 1 } }) {
            throw DecodingError.dataCorruptedError(forKey: .supportedAspectRatios, in: c,
                debugDescription: "supported_aspect_ratios entry \(bad) is not a pair of positive tile counts")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("mllama_vision_model", forKey: .modelType)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numGlobalLayers, forKey: .numGlobalLayers)
        try c.encode(attentionHeads, forKey: .attentionHeads)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(numChannels, forKey: .numChannels)
        try c.encode(maxNumTiles, forKey: .maxNumTiles)
        try c.encode(intermediateLayersIndices, forKey: .intermediateLayersIndices)
        try c.encode(visionOutputDim, forKey: .visionOutputDim)
        try c.encode(normEps, forKey: .normEps)
        try c.encode(supportedAspectRatios, forKey: .supportedAspectRatios)
    }
}
