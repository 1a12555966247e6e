/// The `config.json` of VLMKit's controlled comparison model (`model_type: "vlmkit_token_stream"`):
/// LLaVA's fusion — image features projected into the token stream — with Llama 3.2 Vision's tiled
/// image encoder instead of CLIP, so that it differs from the cross-attention model in the fusion
/// alone. transformers has no class for it (its encoder is Mllama's); the weight names are llava-hf's
/// for the projector and the text model and Mllama's for the encoder.
public struct TokenStreamConfig: HuggingFaceConfiguration, Equatable {
    public static let fileName = "config.json"
    /// `model_type` in `config.json`.
    public static let modelType = "vlmkit_token_stream"

    /// The projector between the encoder and the text width.
    public enum ProjectorType: String, Codable, Sendable, CaseIterable {
        /// LLaVA-1: one linear layer.
        case linear
        /// LLaVA-1.5's `mlp2x_gelu`: linear → GELU → linear.
        case mlp2xGELU = "mlp2x_gelu"
    }

    public var textConfig: LlamaConfig
    public var visionConfig: MllamaVisionConfig
    /// The id of `<|image|>`: the text vocabulary size, one past the text model's rows (never
    /// embedded: its positions take image features).
    public var imageTokenIndex: Int
    public var projectorType: ProjectorType

    public init(textConfig: LlamaConfig, visionConfig: MllamaVisionConfig, imageTokenIndex: Int, projectorType: ProjectorType) {
        self.textConfig = textConfig
        self.visionConfig = visionConfig
        self.imageTokenIndex = imageTokenIndex
        self.projectorType = projectorType
    }

    /// Text positions each image takes: every token (patches and class token) of every tile,
    /// padded tiles included, so that the count is fixed as LLaVA's is.
    public var imageTokensPerImage: Int {
        let side = visionConfig.imageSize / visionConfig.patchSize
        return visionConfig.maxNumTiles * (side * side + 1)
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", textConfig = "text_config", visionConfig = "vision_config"
        case imageTokenIndex = "image_token_index", projectorType = "projector_type"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        textConfig = try c.decode(LlamaConfig.self, forKey: .textConfig)
        visionConfig = try c.decode(MllamaVisionConfig.self, forKey: .visionConfig)
        imageTokenIndex = try c.decode(Int.self, forKey: .imageTokenIndex)
        let name = try c.decode(String.self, forKey: .projectorType)
        guard let type = ProjectorType(rawValue: name) else {
            throw DecodingError.dataCorruptedError(forKey: .projectorType, in: c, debugDescription:
                "projector_type must be one of \(ProjectorType.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
        }
        projectorType = type
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.modelType, forKey: .modelType)
        try c.encode(textConfig, forKey: .textConfig)
        try c.encode(visionConfig, forKey: .visionConfig)
        try c.encode(imageTokenIndex, forKey: .imageTokenIndex)
        try c.encode(projectorType.rawValue, forKey: .projectorType)
    }
}
