/// `generation_config.json`: the sampling defaults a checkpoint ships with, defaults as
/// transformers' `GenerationConfig`.
public struct GenerationConfig: HuggingFaceConfiguration, Equatable {
    public static let fileName = "generation_config.json"

    public var bosTokenId: Int?
    /// One or several ids that end generation.
    public var eosTokenIds: [Int]?
    public var padTokenId: Int?
    public var doSample: Bool
    public var temperature: Double
    public var topP: Double
    public var topK: Int
    /// New tokens to generate at most; `nil` means limited by ``maxLength`` only.
    public var maxNewTokens: Int?
    /// Total length (prompt + new tokens) at most.
    public var maxLength: Int

    public init(bosTokenId: Int? = nil, eosTokenIds: [Int]? = nil, padTokenId: Int? = nil, doSample: Bool = false,
                temperature: Double = 1.0, topP: Double = 1.0, topK: Int = 50, maxNewTokens: Int? = nil, maxLength: Int = 20) {
        self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds
        self.padTokenId = padTokenId
        self.doSample = doSample
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.maxNewTokens = maxNewTokens
        self.maxLength = maxLength
    }

    enum CodingKeys: String, CodingKey {
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id", padTokenId = "pad_token_id", doSample = "do_sample"
        case temperature, topP = "top_p", topK = "top_k", maxNewTokens = "max_new_tokens", maxLength = "max_length"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(bosTokenId: try c.decodeTokenIDs(forKey: .bosTokenId)?.first,
                  eosTokenIds: try c.decodeTokenIDs(forKey: .eosTokenId),
                  padTokenId: try c.decodeTokenIDs(forKey: .padTokenId)?.first,
                  doSample: try c.decodeIfPresent(Bool.self, forKey: .doSample) ?? false,
                  temperature: try c.decodeIfPresent(Double.self, forKey: .temperature) ?? 1.0,
                  topP: try c.decodeIfPresent(Double.self, forKey: .topP) ?? 1.0,
                  topK: try c.decodeIfPresent(Int.self, forKey: .topK) ?? 50,
                  maxNewTokens: try c.decodeIfPresent(Int.self, forKey: .maxNewTokens),
                  maxLength: try c.decodeIfPresent(Int.self, forKey: .maxLength) ?? 20)
        if temperature < 0 {
            throw DecodingError.dataCorruptedError(forKey: .temperature, in: c, debugDescription: "temperature must not be negative, got \(temperature)")
        }
        if !(topP > 0 && topP <= 1) {
            throw DecodingError.dataCorruptedError(forKey: .topP, in: c, debugDescription: "top_p must be in (0, 1], got \(topP)")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(bosTokenId, forKey: .bosTokenId)
        try c.encodeTokenIDs(eosTokenIds, forKey: .eosTokenId)
        try c.encodeIfPresent(padTokenId, forKey: .padTokenId)
        try c.encode(doSample, forKey: .doSample)
        try c.encode(temperature, forKey: .temperature)
        try c.encode(topP, forKey: .topP)
        try c.encode(topK, forKey: .topK)
        try c.encodeIfPresent(maxNewTokens, forKey: .maxNewTokens)
        try c.encode(maxLength, forKey: .maxLength)
    }
}
