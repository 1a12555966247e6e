import Checkpoint

/// Where gated cross-attention adapters go in a text model, and the image encoder that feeds them:
/// the data in `adapters/*.yaml`.
///
/// The text dimensions are not part of a layout: they come from whichever Llama checkpoint the
/// adapters are built on (``mllamaConfig(for:)``), so one layout serves any model size.
public struct AdapterLayout: Codable, Sendable, Equatable {
    /// Where the cross-attention layers sit.
    public enum Placement: Codable, Sendable, Equatable {
        /// Explicit indices in the fused layer list, as `cross_attention_layers` in an mllama
        /// config (the published 11B model: 3, 8, …, 38 among 40 layers).
        case fusedIndices([Int])
        /// One cross-attention layer before text layer `first`, `first + every`, `first + 2·every`, …
        case every(Int, first: Int)

        enum CodingKeys: String, CodingKey { case layers, every, first }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let given = try decoder.container(keyedBy: AnyCodingKey.self).allKeys.map(\.stringValue)
            if let unknown = given.first(where: { CodingKeys(stringValue: $0) == nil }) {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                        debugDescription: "unknown key '\(unknown)' (cross_attention has 'layers', or 'every' with optional 'first')"))
            }
            if let layers = try c.decodeIfPresent([Int].self, forKey: .layers) {
                self = .fusedIndices(layers)
            } else if let every = try c.decodeIfPresent(Int.self, forKey: .every) {
                guard every > 0 else {
                    throw DecodingError.dataCorruptedError(forKey: .every, in: c, debugDescription: "cross_attention.every must be positive")
                }
                self = .every(every, first: try c.decodeIfPresent(Int.self, forKey: .first) ?? 0)
            } else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                        debugDescription: "cross_attention needs 'layers' (a list) or 'every' (with optional 'first')"))
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            switch self {
            case .fusedIndices(let layers): try c.encode(layers, forKey: .layers)
            case .every(let every, let first):
                try c.encode(every, forKey: .every)
                try c.encode(first, forKey: .first)
            }
        }
    }

    /// The fusion design the layout builds.
    public enum Architecture: String, Codable, Sendable, CaseIterable {
        /// Llama 3.2 Vision: gated cross-attention layers read the projected image tokens.
        case crossAttention = "cross-attention"
        /// LLaVA-1's fusion: one linear layer projects the image tokens into the token stream.
        case llavaLinear = "llava-linear"
        /// LLaVA-1.5's fusion: linear → GELU → linear into the token stream.
        case llavaMLP2x = "llava-mlp2x"

        /// The token-stream projector, nil for cross-attention.
        public var projectorType: TokenStreamConfig.ProjectorType? {
            switch self {
            case .crossAttention: nil
            case .llavaLinear: .linear
            case .llavaMLP2x: .mlp2xGELU
            }
        }
    }

    /// `architecture`: `cross-attention` (the default), `llava-linear` or `llava-mlp2x`.
    public var architecture: Architecture
    /// Where the cross-attention layers sit (none for a token-stream layout).
    public var crossAttention: Placement
    /// The image encoder's shape: an mllama `vision_config`, with transformers' defaults for what
    /// it leaves out.
    public var vision: MllamaVisionConfig
    /// The standard deviation of fresh weights (`initializer_range`).
    public var initializerRange: Double
    /// The starting value of every cross-attention gate (`gate_init`, before tanh). Meta's and
    /// transformers' is 0: a fresh adapter then changes nothing, even with an image, and only the
    /// gates get a gradient at first. A small model trained briefly learns faster from an open gate
    /// (Docs/training.md); without an image the output is the text model's either way.
    public var gateInit: Double

    enum CodingKeys: String, CodingKey {
        case crossAttention = "cross_attention", vision, initializerRange = "initializer_range", gateInit = "gate_init"
        case architecture
    }

    public init(crossAttention: Placement, vision: MllamaVisionConfig, initializerRange: Double = 0.02, gateInit: Double = 0,
                architecture: Architecture = .crossAttention) {
        self.architecture = architecture
        self.crossAttention = crossAttention
        self.vision = vision
        self.initializerRange = initializerRange
        self.gateInit = gateInit
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architecture = try c.decodeIfPresent(Architecture.self, forKey: .architecture) ?? .crossAttention
        if architecture == .crossAttention {
            crossAttention = try c.decode(Placement.self, forKey: .crossAttention)
        } else {
            guard !c.contains(.crossAttention) else {
                throw DecodingError.dataCorruptedError(forKey: .crossAttention, in: c,
                    debugDescription: "cross_attention does not apply to architecture \(architecture.rawValue) (image tokens go into the token stream)")
            }
            crossAttention = .fusedIndices([])
        }
        vision = try c.decode(MllamaVisionConfig.self, forKey: .vision)
        if let problem = Self.visionProblem(vision) {
            throw DecodingError.dataCorruptedError(forKey: .vision, in: c, debugDescription: problem)
        }
        // transformers' default list is for 4 tiles only (it refuses a config that pairs it with
        // another max_num_tiles), so a layout that names no grids gets those of its own tile count.
        if vision.supportedAspectRatios == MllamaVisionConfig.defaultSupportedAspectRatios {
            vision.supportedAspectRatios = MllamaVisionConfig.supportedAspectRatios(maxNumTiles: vision.maxNumTiles)
        }
        initializerRange = try c.decodeIfPresent(Double.self, forKey: .initializerRange) ?? 0.02
        gateInit = try c.decodeIfPresent(Double.self, forKey: .gateInit) ?? 0
        guard gateInit.isFinite else {
            throw DecodingError.dataCorruptedError(forKey: .gateInit, in: c, debugDescription: "gate_init must be a finite number")
        }
    }

    /// What makes an image encoder shape unbuildable, or nil.
    static func visionProblem(_ v: MllamaVisionConfig) -> String? {
        if v.imageSize <= 0 || v.patchSize <= 0 || v.imageSize % v.patchSize != 0 {
            return "image_size (\(v.imageSize)) must be a positive multiple of patch_size (\(v.patchSize))"
        }
        if v.maxNumTiles < 1 { return "max_num_tiles must be at least 1, got \(v.maxNumTiles)" }
        if v.hiddenSize <= 0 || v.attentionHeads <= 0 || v.hiddenSize % v.attentionHeads != 0 {
            return "hidden_size (\(v.hiddenSize)) must be a positive multiple of attention_heads (\(v.attentionHeads))"
        }
        if v.numHiddenLayers < 1 || v.numGlobalLayers < 0 { return "num_hidden_layers must be at least 1 and num_global_layers at least 0" }
        if let bad = v.intermediateLayersIndices.first(where: { $0 < 0 || $0 >= v.numHiddenLayers }) {
            return "intermediate_layers_indices holds \(bad), outside the \(v.numHiddenLayers) layers"
        }
        return nil
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(architecture, forKey: .architecture)
        if architecture == .crossAttention { try c.encode(crossAttention, forKey: .crossAttention) }
        try c.encode(vision, forKey: .vision)
        try c.encode(initializerRange, forKey: .initializerRange)
        try c.encode(gateInit, forKey: .gateInit)
    }

    /// A layout that cannot be applied to a text model, with the reason.
    public struct Mismatch: Error, CustomStringConvertible {
        public let description: String
    }

    /// The fused indices of the cross-attention layers for a text model of `textLayers` layers.
    public func crossAttentionIndices(textLayers: Int) throws -> [Int] {
        switch crossAttention {
        case .fusedIndices(let indices):
            let total = textLayers + indices.count
            guard indices == indices.sorted(), Set(indices).count == indices.count,
                  indices.allSatisfy({ $0 >= 0 && $0 < total }) else {
                throw Mismatch(description: "cross_attention.layers \(indices) must be distinct, ascending and below \(total) "
                               + "(\(textLayers) text layers + \(indices.count) cross-attention layers)")
            }
            return indices
        case .every(let every, let first):
            guard first >= 0 && first < textLayers else {
                throw Mismatch(description: "cross_attention.first = \(first) must name one of the \(textLayers) text layers")
            }
            let before = Array(stride(from: first, to: textLayers, by: every))
            return before.enumerated().map { $0.element + $0.offset }
        }
    }

    /// The mllama configuration of `llama` with these adapters: the text model's own dimensions,
    /// its layers plus the cross-attention layers, and this image encoder.
    public func mllamaConfig(for llama: LlamaConfig) throws -> MllamaConfig {
        let indices = try crossAttentionIndices(textLayers: llama.numHiddenLayers)
        let features = vision.hiddenSize * (1 + vision.intermediateLayersIndices.count)
        guard vision.visionOutputDim == features else {
            throw Mismatch(description: "vision.vision_output_dim is \(vision.visionOutputDim), but the encoder emits "
                           + "hidden_size × (1 + intermediate layers) = \(features) features per token")
        }
        guard vision.hiddenSize % vision.attentionHeads == 0,
              vision.intermediateLayersIndices.allSatisfy({ $0 >= 0 && $0 < vision.numHiddenLayers }) else {
            throw Mismatch(description: "vision: hidden_size must divide into attention_heads and every intermediate layer index must be below num_hidden_layers")
        }
        var text = llama
        text.numHiddenLayers = llama.numHiddenLayers + indices.count
        return MllamaConfig(textConfig: MllamaTextConfig(llama: text, crossAttentionLayers: indices),
                            visionConfig: vision, imageTokenIndex: llama.vocabSize)
    }

    /// For each text layer of the source model, its index in the fused layer list.
    public func fusedIndicesOfTextLayers(textLayers: Int) throws -> [Int] {
        let cross = Set(try crossAttentionIndices(textLayers: textLayers))
        return (0..<(textLayers + cross.count)).filter { !cross.contains($0) }
    }
}

/// Any key, for listing the keys a mapping has.
private struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
