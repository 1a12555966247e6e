/// A size in an image processor's configuration: `{"height": 560, "width": 560}`,
/// `{"shortest_edge": 336}`, or (older files) a bare integer, read as `shortest_edge`.
public struct ImageProcessorSize: Codable, Sendable, Equatable {
    public var height: Int?
    public var width: Int?
    public var shortestEdge: Int?
    public var longestEdge: Int?

    public init(height: Int? = nil, width: Int? = nil, shortestEdge: Int? = nil, longestEdge: Int? = nil) {
        self.height = height
        self.width = width
        self.shortestEdge = shortestEdge
        self.longestEdge = longestEdge
    }

    enum CodingKeys: String, CodingKey {
        case height, width, shortestEdge = "shortest_edge", longestEdge = "longest_edge"
    }

    public init(from decoder: Decoder) throws {
        if let single = try? decoder.singleValueContainer().decode(Int.self) {
            self.init(shortestEdge: single)
            return
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(height: try c.decodeIfPresent(Int.self, forKey: .height), width: try c.decodeIfPresent(Int.self, forKey: .width),
                  shortestEdge: try c.decodeIfPresent(Int.self, forKey: .shortestEdge),
                  longestEdge: try c.decodeIfPresent(Int.self, forKey: .longestEdge))
        if (height == nil) != (width == nil) {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: "\(decoder.codingPath.last?.stringValue ?? "size") must give both 'height' and 'width'"))
        }
        if height == nil && shortestEdge == nil && longestEdge == nil {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: "\(decoder.codingPath.last?.stringValue ?? "size") must contain 'height'/'width' or 'shortest_edge'"))
        }
    }
}

/// The fields every transformers image processor shares, with their defaults.
private struct _CommonImageProcessorFields {
    var doConvertRgb: Bool, doResize: Bool, resample: Int, doRescale: Bool, rescaleFactor: Double
    var doNormalize: Bool, imageMean: [Double], imageStd: [Double]

    enum Keys: String, CodingKey {
        case doConvertRgb = "do_convert_rgb", doResize = "do_resize", resample, doRescale = "do_rescale"
        case rescaleFactor = "rescale_factor", doNormalize = "do_normalize", imageMean = "image_mean", imageStd = "image_std"
    }

    init(from decoder: Decoder, resample defaultResample: Int, mean: [Double], std: [Double]) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        doConvertRgb = try c.decodeIfPresent(Bool.self, forKey: .doConvertRgb) ?? true
        doResize = try c.decodeIfPresent(Bool.self, forKey: .doResize) ?? true
        resample = try c.decodeIfPresent(Int.self, forKey: .resample) ?? defaultResample
        doRescale = try c.decodeIfPresent(Bool.self, forKey: .doRescale) ?? true
        rescaleFactor = try c.decodeIfPresent(Double.self, forKey: .rescaleFactor) ?? 1.0 / 255.0
        doNormalize = try c.decodeIfPresent(Bool.self, forKey: .doNormalize) ?? true
        imageMean = try c.decodeIfPresent([Double].self, forKey: .imageMean) ?? mean
        imageStd = try c.decodeIfPresent([Double].self, forKey: .imageStd) ?? std
        for (key, values) in [(Keys.imageMean, imageMean), (.imageStd, imageStd)] where values.count != 3 {
            throw DecodingError.dataCorruptedError(forKey: key, in: c,
                debugDescription: "\(key.stringValue) must hold 3 values (one per RGB channel), got \(values.count)")
        }
        if let zero = imageStd.firstIndex(of: 0) {
            throw DecodingError.dataCorruptedError(forKey: .imageStd, in: c, debugDescription: "image_std[\(zero)] is zero")
        }
    }
}

/// Resampling filters as PIL numbers them (the `resample` field).
public enum ResampleFilter: Int, Sendable {
    case nearest = 0, lanczos = 1, bilinear = 2, bicubic = 3, box = 4, hamming = 5
}

/// `preprocessor_config.json` of a Llama 3.2 Vision checkpoint (transformers' `MllamaImageProcessor`):
/// resize to fit a grid of at most `max_image_tiles` tiles of `size`, pad, rescale, normalize.
public struct MllamaImageProcessorConfig: HuggingFaceConfiguration, Equatable {
    public static let fileName = "preprocessor_config.json"

    public var doConvertRgb: Bool
    public var doResize: Bool
    /// One tile's size (560×560 in the published model; transformers' default is 224×224).
    public var size: ImageProcessorSize
    /// PIL filter number (2 = bilinear).
    public var resample: Int
    public var doRescale: Bool
    public var rescaleFactor: Double
    public var doNormalize: Bool
    public var imageMean: [Double]
    public var imageStd: [Double]
    public var doPad: Bool
    public var maxImageTiles: Int

    public init(doConvertRgb: Bool = true, doResize: Bool = true, size: ImageProcessorSize = .init(height: 224, width: 224),
                resample: Int = 2, doRescale: Bool = true, rescaleFactor: Double = 1.0 / 255.0, doNormalize: Bool = true,
                imageMean: [Double] = [0.5, 0.5, 0.5], imageStd: [Double] = [0.5, 0.5, 0.5], doPad: Bool = true,
                maxImageTiles: Int = 4) {
        self.doConvertRgb = doConvertRgb
        self.doResize = doResize
        self.size = size
        self.resample = resample
        self.doRescale = doRescale
        self.rescaleFactor = rescaleFactor
        self.doNormalize = doNormalize
        self.imageMean = imageMean
        self.imageStd = imageStd
        self.doPad = doPad
        self.maxImageTiles = maxImageTiles
    }

    /// The settings Llama 3.2 Vision ships (CLIP's mean and standard deviation, bilinear
    /// resampling), for tiles of `tileSize` pixels.
    public static func published(tileSize: Int = 560, maxImageTiles: Int = 4) -> MllamaImageProcessorConfig {
        MllamaImageProcessorConfig(size: .init(height: tileSize, width: tileSize),
                                   imageMean: [0.48145466, 0.4578275, 0.40821073],
                                   imageStd: [0.26862954, 0.26130258, 0.27577711], maxImageTiles: maxImageTiles)
    }

    enum CodingKeys: String, CodingKey {
        case doConvertRgb = "do_convert_rgb", doResize = "do_resize", size, resample, doRescale = "do_rescale"
        case rescaleFactor = "rescale_factor", doNormalize = "do_normalize", imageMean = "image_mean"
        case imageStd = "image_std", doPad = "do_pad", maxImageTiles = "max_image_tiles"
        case imageProcessorType = "image_processor_type", processorClass = "processor_class"
    }

    public init(from decoder: Decoder) throws {
        let common = try _CommonImageProcessorFields(from: decoder, resample: 2, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let size = try c.decodeIfPresent(ImageProcessorSize.self, forKey: .size) ?? .init(height: 224, width: 224)
        guard size.height != nil else {
            throw DecodingError.dataCorruptedError(forKey: .size, in: c, debugDescription: "size must contain 'height' and 'width' (one tile)")
        }
        self.init(doConvertRgb: common.doConvertRgb, doResize: common.doResize, size: size, resample: common.resample,
                  doRescale: common.doRescale, rescaleFactor: common.rescaleFactor, doNormalize: common.doNormalize,
                  imageMean: common.imageMean, imageStd: common.imageStd,
                  doPad: try c.decodeIfPresent(Bool.self, forKey: .doPad) ?? true,
                  maxImageTiles: try c.decodeIfPresent(Int.self, forKey: .maxImageTiles) ?? 4)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("MllamaImageProcessor", forKey: .imageProcessorType)
        // transformers' AutoProcessor reads the processor's class from here.
        try c.encode("MllamaProcessor", forKey: .processorClass)
        try c.encode(doConvertRgb, forKey: .doConvertRgb)
        try c.encode(doResize, forKey: .doResize)
        try c.encode(size, forKey: .size)
        try c.encode(resample, forKey: .resample)
        try c.encode(doRescale, forKey: .doRescale)
        try c.encode(rescaleFactor, forKey: .rescaleFactor)
        try c.encode(doNormalize, forKey: .doNormalize)
        try c.encode(imageMean, forKey: .imageMean)
        try c.encode(imageStd, forKey: .imageStd)
        try c.encode(doPad, forKey: .doPad)
        try c.encode(maxImageTiles, forKey: .maxImageTiles)
    }
}

/// `preprocessor_config.json` of a CLIP-based checkpoint such as LLaVA (transformers'
/// `CLIPImageProcessor`): resize the shortest edge, center-crop, rescale, normalize; with
/// `do_pad` (transformers' `LlavaImageProcessor`, LLaVA-1.5's `expand2square`), first pad to a
/// square with the mean colour.
public struct CLIPImageProcessorConfig: HuggingFaceConfiguration, Equatable {
    public static let fileName = "preprocessor_config.json"

    /// OpenAI CLIP's channel statistics, transformers' defaults for this processor.
    public static let openAIMean = [0.48145466, 0.4578275, 0.40821073]
    public static let openAIStd = [0.26862954, 0.26130258, 0.27577711]

    public var doConvertRgb: Bool
    public var doResize: Bool
    /// Usually `{"shortest_edge": 336}`.
    public var size: ImageProcessorSize
    /// PIL filter number (3 = bicubic).
    public var resample: Int
    public var doCenterCrop: Bool
    public var cropSize: ImageProcessorSize
    public var doRescale: Bool
    public var rescaleFactor: Double
    public var doNormalize: Bool
    public var imageMean: [Double]
    public var imageStd: [Double]
    /// Pad to a square (centred, colour `int(mean·255)` per channel) before resizing.
    public var doPad: Bool

    public init(doConvertRgb: Bool = true, doResize: Bool = true, size: ImageProcessorSize = .init(shortestEdge: 224),
                resample: Int = 3, doCenterCrop: Bool = true, cropSize: ImageProcessorSize = .init(height: 224, width: 224),
                doRescale: Bool = true, rescaleFactor: Double = 1.0 / 255.0, doNormalize: Bool = true,
                imageMean: [Double] = CLIPImageProcessorConfig.openAIMean, imageStd: [Double] = CLIPImageProcessorConfig.openAIStd,
                doPad: Bool = false) {
        self.doConvertRgb = doConvertRgb
        self.doResize = doResize
        self.size = size
        self.resample = resample
        self.doCenterCrop = doCenterCrop
        self.cropSize = cropSize
        self.doRescale = doRescale
        self.rescaleFactor = rescaleFactor
        self.doNormalize = doNormalize
        self.imageMean = imageMean
        self.imageStd = imageStd
        self.doPad = doPad
    }

    enum CodingKeys: String, CodingKey {
        case doConvertRgb = "do_convert_rgb", doResize = "do_resize", size, resample, doCenterCrop = "do_center_crop"
        case cropSize = "crop_size", doRescale = "do_rescale", rescaleFactor = "rescale_factor"
        case doNormalize = "do_normalize", imageMean = "image_mean", imageStd = "image_std"
        case imageProcessorType = "image_processor_type", doPad = "do_pad"
    }

    public init(from decoder: Decoder) throws {
        let common = try _CommonImageProcessorFields(from: decoder, resample: 3, mean: Self.openAIMean, std: Self.openAIStd)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var crop = try c.decodeIfPresent(ImageProcessorSize.self, forKey: .cropSize) ?? .init(height: 224, width: 224)
        if let edge = crop.shortestEdge, crop.height == nil { crop = .init(height: edge, width: edge) }  // `"crop_size": 336`
        self.init(doConvertRgb: common.doConvertRgb, doResize: common.doResize,
                  size: try c.decodeIfPresent(ImageProcessorSize.self, forKey: .size) ?? .init(shortestEdge: 224),
                  resample: common.resample, doCenterCrop: try c.decodeIfPresent(Bool.self, forKey: .doCenterCrop) ?? true,
                  cropSize: crop, doRescale: common.doRescale, rescaleFactor: common.rescaleFactor,
                  doNormalize: common.doNormalize, imageMean: common.imageMean, imageStd: common.imageStd,
                  doPad: try c.decodeIfPresent(Bool.self, forKey: .doPad) ?? false)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        // CLIPImageProcessor ignores do_pad; LlavaImageProcessor applies it.
        try c.encode(doPad ? "LlavaImageProcessor" : "CLIPImageProcessor", forKey: .imageProcessorType)
        try c.encode(doConvertRgb, forKey: .doConvertRgb)
        try c.encode(doResize, forKey: .doResize)
        try c.encode(size, forKey: .size)
        try c.encode(resample, forKey: .resample)
        try c.encode(doCenterCrop, forKey: .doCenterCrop)
        try c.encode(cropSize, forKey: .cropSize)
        try c.encode(doRescale, forKey: .doRescale)
        try c.encode(rescaleFactor, forKey: .rescaleFactor)
        try c.encode(doNormalize, forKey: .doNormalize)
        try c.encode(imageMean, forKey: .imageMean)
        try c.encode(imageStd, forKey: .imageStd)
        if doPad { try c.encode(doPad, forKey: .doPad) }
    }
}
