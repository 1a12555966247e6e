/// The Llama text decoder's `config.json` (`model_type: "llama"`), as transformers writes it.
///
/// Fields that fix the tower's width and depth (`vocab_size`, `hidden_size`, `intermediate_size`,
/// `num_hidden_layers`, `num_attention_heads`) are required: defaulting them would silently build
/// a model of another size than the weights. Everything else defaults as in transformers'
/// `LlamaConfig`. Rope settings are read from `rope_parameters` or from `rope_theta` +
/// `rope_scaling` (see ``RopeParameters``) and written back in the newer `rope_parameters` spelling.
public struct LlamaConfig: HuggingFaceConfiguration, Equatable {
    public static let fileName = "config.json"

    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    /// Key/value heads for grouped-query attention (defaults to `numAttentionHeads`).
    public var numKeyValueHeads: Int
    /// Width of one head (defaults to `hiddenSize / numAttentionHeads`).
    public var headDim: Int
    public var hiddenAct: String
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var rope: RopeParameters
    public var tieWordEmbeddings: Bool
    public var attentionBias: Bool
    public var mlpBias: Bool
    public var bosTokenId: Int?
    /// One or several end-of-sequence ids (Llama 3.1 lists `[128001, 128008, 128009]`).
    public var eosTokenIds: [Int]?
    public var padTokenId: Int?
    /// The checkpoint's storage dtype (`dtype`, formerly `torch_dtype`), e.g. `bfloat16`.
    public var torchDType: String?

    /// The rope base θ (shorthand for `rope.ropeTheta`).
    public var ropeTheta: Double { rope.ropeTheta }

    /// A configuration for tests and tiny models; defaults as transformers' `LlamaConfig`.
    public init(vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
                numKeyValueHeads: Int? = nil, headDim: Int? = nil, hiddenAct: String = "silu",
                maxPositionEmbeddings: Int = 2048, rmsNormEps: Double = 1e-6,
                rope: RopeParameters = RopeParameters(ropeTheta: 10_000), tieWordEmbeddings: Bool = false,
                attentionBias: Bool = false, mlpBias: Bool = false, bosTokenId: Int? = 1, eosTokenIds: [Int]? = [2],
                padTokenId: Int? = nil, torchDType: String? = nil, modelType: String = "llama") {
        self.modelType = modelType
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads ?? numAttentionHeads
        self.headDim = headDim ?? hiddenSize / numAttentionHeads
        self.hiddenAct = hiddenAct
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.rmsNormEps = rmsNormEps
        self.rope = rope
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias
        self.mlpBias = mlpBias
        self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds
        self.padTokenId = padTokenId
        self.torchDType = torchDType
    }

    /// Defaults that differ between transformers' `LlamaConfig` and `MllamaTextConfig`.
    struct Defaults {
        var modelType = "llama"
        var numKeyValueHeads: Int? = nil
        var maxPositionEmbeddings = 2048
        var rmsNormEps = 1e-6
        var ropeTheta = 10_000.0
        var bosTokenId: Int? = 1
        var eosTokenIds: [Int]? = [2]
        var padTokenId: Int? = nil
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads", headDim = "head_dim"
        case hiddenAct = "hidden_act", maxPositionEmbeddings = "max_position_embeddings", rmsNormEps = "rms_norm_eps"
        case ropeParameters = "rope_parameters", ropeTheta = "rope_theta", ropeScaling = "rope_scaling"
        case tieWordEmbeddings = "tie_word_embeddings"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id", padTokenId = "pad_token_id"
        case dtype, torchDType = "torch_dtype"
    }

    public init(from decoder: Decoder) throws {
        try self.init(from: decoder, defaults: Defaults())
    }

    init(from decoder: Decoder, defaults: Defaults) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? defaults.modelType
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        guard numAttentionHeads > 0 else {
            throw DecodingError.dataCorruptedError(forKey: .numAttentionHeads, in: c, debugDescription: "num_attention_heads must be positive")
        }
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? defaults.numKeyValueHeads ?? numAttentionHeads
        guard numKeyValueHeads > 0, numAttentionHeads % numKeyValueHeads == 0 else {
            throw DecodingError.dataCorruptedError(forKey: .numKeyValueHeads, in: c,
                debugDescription: "num_key_value_heads (\(numKeyValueHeads)) must divide num_attention_heads (\(numAttentionHeads))")
        }
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? hiddenSize / numAttentionHeads
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? defaults.maxPositionEmbeddings
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? defaults.rmsNormEps
        rope = try RopeParameters.decode(from: decoder, defaultTheta: defaults.ropeTheta)
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        mlpBias = try c.decodeIfPresent(Bool.self, forKey: .mlpBias) ?? false
        bosTokenId = c.contains(.bosTokenId) ? try c.decodeTokenIDs(forKey: .bosTokenId)?.first : defaults.bosTokenId
        eosTokenIds = c.contains(.eosTokenId) ? try c.decodeTokenIDs(forKey: .eosTokenId) : defaults.eosTokenIds
        padTokenId = c.contains(.padTokenId) ? try c.decodeTokenIDs(forKey: .padTokenId)?.first : defaults.padTokenId
        torchDType = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDType)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelType, forKey: .modelType)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        // The published spelling (rope_theta + rope_scaling), which transformers 4.x and 5.x both read;
        // 4.45.2's Mllama needs rope_scaling present even for plain RoPE.
        try c.encode(rope.ropeTheta, forKey: .ropeTheta)
        try c.encode(rope.scalingWithoutTheta, forKey: .ropeScaling)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(mlpBias, forKey: .mlpBias)
        // Absent ids are written as null, as transformers does: omitting them would bring back a default.
        if let bosTokenId { try c.encode(bosTokenId, forKey: .bosTokenId) } else { try c.encodeNil(forKey: .bosTokenId) }
        if let eosTokenIds { try c.encodeTokenIDs(eosTokenIds, forKey: .eosTokenId) } else { try c.encodeNil(forKey: .eosTokenId) }
        if let padTokenId { try c.encode(padTokenId, forKey: .padTokenId) } else { try c.encodeNil(forKey: .padTokenId) }
        try c.encodeIfPresent(torchDType, forKey: .dtype)
    }
}
