/// Any model configuration VLMKit reads, chosen by the file's `model_type`.
///
/// ```swift
/// switch try ModelConfig.load(from: checkpointFolder) {
/// case .mllama(let config): …
/// case .llava(let config): …
/// case .llama(let config): …
/// case .tokenStream(let config): …
/// }
/// ```
public enum ModelConfig: HuggingFaceConfiguration, Equatable {
    case llama(LlamaConfig)
    case mllama(MllamaConfig)
    case llava(LlavaConfig)
    /// VLMKit's controlled comparison model (`model_type: vlmkit_token_stream`).
    case tokenStream(TokenStreamConfig)

    public static let fileName = "config.json"

    /// The `model_type` values understood.
    public static let supportedModelTypes = ["llama", "llava", "mllama", TokenStreamConfig.modelType]

    /// The `model_type` this configuration was read from.
    public var modelType: String {
        switch self {
        case .llama: "llama"
        case .mllama: "mllama"
        case .llava: "llava"
        case .tokenStream: TokenStreamConfig.modelType
        }
    }

    private enum CodingKeys: String, CodingKey { case modelType = "model_type" }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let type = try c.decode(String.self, forKey: .modelType)
        switch type {
        case "llama": self = .llama(try LlamaConfig(from: decoder))
        case "mllama": self = .mllama(try MllamaConfig(from: decoder))
        case "llava": self = .llava(try LlavaConfig(from: decoder))
        case TokenStreamConfig.modelType: self = .tokenStream(try TokenStreamConfig(from: decoder))
        default:
            throw DecodingError.dataCorruptedError(forKey: .modelType, in: c,
                debugDescription: "model_type '\(type)' is not supported (expected one of \(Self.supportedModelTypes.joined(separator: ", ")))")
        }
    }

    public func encode(to encoder: Encoder) throws {
        switch self {
        case .llama(let config): try config.encode(to: encoder)
        case .mllama(let config): try config.encode(to: encoder)
        case .llava(let config): try config.encode(to: encoder)
        case .tokenStream(let config): try config.encode(to: encoder)
        }
    }
}
