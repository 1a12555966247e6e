/// Rotary position embedding settings, read from either spelling transformers uses:
///
/// - transformers ≤ 4: `"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, …}`
///   (older files say `"type"` instead of `"rope_type"`);
/// - transformers ≥ 5: `"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, …}`.
///
/// Llama 3.1's scaling rescales each frequency band: wavelengths above
/// `original_max_position_embeddings / low_freq_factor` are divided by `factor`, those below
/// `… / high_freq_factor` are kept, and the band between is interpolated.
public struct RopeParameters: Codable, Sendable, Equatable {
    /// `default` (plain RoPE) or `llama3` (the rotary types VLMKit implements).
    public var ropeType: String
    /// The base θ of the frequencies θ^(-2i/Dh).
    public var ropeTheta: Double
    public var factor: Double?
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var originalMaxPositionEmbeddings: Int?

    /// The rope types VLMKit implements.
    public static let supportedTypes: Set<String> = ["default", "llama3"]

    public init(ropeType: String = "default", ropeTheta: Double, factor: Double? = nil, lowFreqFactor: Double? = nil,
                highFreqFactor: Double? = nil, originalMaxPositionEmbeddings: Int? = nil) {
        self.ropeType = ropeType
        self.ropeTheta = ropeTheta
        self.factor = factor
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }

    /// Llama 3.1 / 3.2 scaling (the published 8B and 11B-Vision values).
    public static func llama3(theta: Double = 500_000, factor: Double = 8, lowFreqFactor: Double = 1,
                              highFreqFactor: Double = 4, originalMaxPositionEmbeddings: Int = 8192) -> RopeParameters {
        RopeParameters(ropeType: "llama3", ropeTheta: theta, factor: factor, lowFreqFactor: lowFreqFactor,
                       highFreqFactor: highFreqFactor, originalMaxPositionEmbeddings: originalMaxPositionEmbeddings)
    }

    enum CodingKeys: String, CodingKey {
        case ropeType = "rope_type", type, ropeTheta = "rope_theta", factor
        case lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    public init(from decoder: Decoder) throws {
        try self.init(from: decoder, fallbackTheta: nil, fieldName: "rope_parameters")
    }

    /// Decodes one rope dictionary; `fallbackTheta` supplies the top-level `rope_theta` of the old spelling.
    init(from decoder: Decoder, fallbackTheta: Double?, fieldName: String) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func fail(_ message: String) -> DecodingError {
            .dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: message))
        }
        let type = try c.decodeIfPresent(String.self, forKey: .ropeType) ?? c.decodeIfPresent(String.self, forKey: .type)
        guard let type else { throw fail("\(fieldName) must contain 'rope_type'") }
        guard Self.supportedTypes.contains(type) else {
            throw fail("\(fieldName) has rope_type '\(type)'; VLMKit supports \(Self.supportedTypes.sorted().joined(separator: ", "))")
        }
        ropeType = type
        guard let theta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? fallbackTheta else {
            throw fail("\(fieldName) must contain 'rope_theta'")
        }
        ropeTheta = theta
        factor = try c.decodeIfPresent(Double.self, forKey: .factor)
        lowFreqFactor = try c.decodeIfPresent(Double.self, forKey: .lowFreqFactor)
        highFreqFactor = try c.decodeIfPresent(Double.self, forKey: .highFreqFactor)
        originalMaxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)
        if type != "default" && factor == nil { throw fail("\(fieldName) must contain 'factor'") }
        if type == "llama3" {
            if lowFreqFactor == nil { throw fail("\(fieldName) must contain 'low_freq_factor'") }
            if highFreqFactor == nil { throw fail("\(fieldName) must contain 'high_freq_factor'") }
            if originalMaxPositionEmbeddings == nil { throw fail("\(fieldName) must contain 'original_max_position_embeddings'") }
            if lowFreqFactor! >= highFreqFactor! { throw fail("\(fieldName) needs low_freq_factor < high_freq_factor") }
        }
        if let factor, factor < 1 { throw fail("\(fieldName) factor must be at least 1, got \(factor)") }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ropeType, forKey: .ropeType)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encodeIfPresent(factor, forKey: .factor)
        try c.encodeIfPresent(lowFreqFactor, forKey: .lowFreqFactor)
        try c.encodeIfPresent(highFreqFactor, forKey: .highFreqFactor)
        try c.encodeIfPresent(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
    }

    /// The `rope_scaling` dictionary of the published spelling: these settings without `rope_theta`.
    var scalingWithoutTheta: ScalingDictionary { ScalingDictionary(parameters: self) }

    /// Encodes ``RopeParameters`` as `rope_scaling` (theta goes in its own top-level field).
    struct ScalingDictionary: Encodable {
        let parameters: RopeParameters
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(parameters.ropeType, forKey: .ropeType)
            try c.encodeIfPresent(parameters.factor, forKey: .factor)
            try c.encodeIfPresent(parameters.lowFreqFactor, forKey: .lowFreqFactor)
            try c.encodeIfPresent(parameters.highFreqFactor, forKey: .highFreqFactor)
            try c.encodeIfPresent(parameters.originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
        }
    }

    /// Reads the rope settings of a text config in either spelling (see the type's documentation).
    static func decode(from decoder: Decoder, defaultTheta: Double) throws -> RopeParameters {
        let c = try decoder.container(keyedBy: _AnyKey.self)
        if c.contains(_AnyKey("rope_parameters")), try !c.decodeNil(forKey: _AnyKey("rope_parameters")) {
            let nested = try c.superDecoder(forKey: _AnyKey("rope_parameters"))
            let theta = try c.decodeIfPresent(Double.self, forKey: _AnyKey("rope_theta")) ?? defaultTheta
            return try RopeParameters(from: nested, fallbackTheta: theta, fieldName: "rope_parameters")
        }
        let theta = try c.decodeIfPresent(Double.self, forKey: _AnyKey("rope_theta")) ?? defaultTheta
        if c.contains(_AnyKey("rope_scaling")), try !c.decodeNil(forKey: _AnyKey("rope_scaling")) {
            let nested = try c.superDecoder(forKey: _AnyKey("rope_scaling"))
            return try RopeParameters(from: nested, fallbackTheta: theta, fieldName: "rope_scaling")
        }
        return RopeParameters(ropeType: "default", ropeTheta: theta)
    }
}
