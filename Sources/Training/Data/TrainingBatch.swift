import Media
import Models
import Processing
import TensorCore

// Shape legend: B samples, T tokens (padded), N images per sample (padded), G tiles per image,
// C = 3 channels, t tile side.

/// A micro-batch ready for a training step.
public struct TrainingBatch: @unchecked Sendable {
    /// Token ids right-padded with the processor's pad id, attention mask, and (when any sample has
    /// images) pixel values, aspect-ratio ids and mask, and the cross-attention mask, exactly as
    /// ``MllamaProcessor/process(prompts:images:)`` builds them for the same ids and images.
    public var inputs: ModelInputs
    /// (B, T) int64: aligned with the input ids, unshifted, −100 where not learned (and on padding).
    public var labels: Tensor
    /// Learned positions after the shift (labels 1..<T that are not −100): the loss's denominator.
    public var lossTokenCount: Int
    /// The ids of the batch's samples, in row order.
    public var sampleIDs: [String]
    /// Seconds the consumer waited for this batch (0 when it was ready).
    public var dataWaitSeconds: Double = 0
    /// Where LoRA dropout's masks for this micro-batch come from (nil: no dropout). The stage sets it
    /// from its seed, the step and the micro-batch's place in the step.
    public var dropoutSeed: UInt64?

    public init(inputs: ModelInputs, labels: Tensor, lossTokenCount: Int, sampleIDs: [String], dataWaitSeconds: Double = 0) {
        self.inputs = inputs
        self.labels = labels
        self.lossTokenCount = lossTokenCount
        self.sampleIDs = sampleIDs
        self.dataWaitSeconds = dataWaitSeconds
    }
}

/// An encoded sample with its images decoded and processed, one step from a batch.
struct PreparedSample: @unchecked Sendable {
    var sample: EncodedSample
    /// The image processor's output for this sample alone ((1, N, G, C, t, t)…); nil without images.
    var images: MllamaImageBatch?
    /// LLaVA's: the CLIP processor's pixel values of this sample's images (N, C, S, S); nil otherwise.
    var clipPixels: Tensor? = nil
}

enum BatchCollation {
    /// Decodes (or blanks) a sample's images and runs the image processor on them: CLIP's when
    /// `clipImages` is given (LLaVA), else the Mllama processor's.
    static func prepare(_ sample: EncodedSample, processor: MllamaProcessor, blankImages: Bool,
                        clipImages: CLIPImageProcessor? = nil) throws -> PreparedSample {
        guard !sample.images.isEmpty else { return PreparedSample(sample: sample, images: nil) }
        var images: [Image] = []
        for source in sample.images {
            let image = try ImageLoading.load(source, for: sample.location)
            images.append(blankImages ? Image.black(like: image) : image)
        }
        do {
            if let clipImages { return PreparedSample(sample: sample, images: nil, clipPixels: try clipImages.preprocess(images)) }
            return PreparedSample(sample: sample, images: try processor.imageProcessor.preprocess([images]))
        } catch {
            throw DataIssue(.undecodableImage, at: sample.location, "\(error)")
        }
    }

    /// Pads and stacks prepared samples into a batch; padding images are all zero, with tile 0
    /// unmasked as transformers' processor leaves them. CLIP pixel values (LLaVA) are stacked
    /// instead, `(I, C, S, S)`: every image of the batch in row order — the order of their tokens — with no padding.
    static func collate(_ samples: [PreparedSample], processor: MllamaProcessor) -> TrainingBatch {
        let b = samples.count
        let t = samples.map(\.sample.tokenIDs.count).max() ?? 0
        var ids = [Int](repeating: processor.padTokenID, count: b * t)
        var attention = [Int](repeating: 0, count: b * t)
        var labels = [Int](repeating: SampleEncoder.ignoreIndex, count: b * t)
        var lossTokens = 0
        for (row, prepared) in samples.enumerated() {
            let sample = prepared.sample
            for (position, (id, label)) in zip(sample.tokenIDs, sample.labels).enumerated() {
                ids[row * t + position] = id
                attention[row * t + position] = 1
                labels[row * t + position] = label
                if position > 0 && label != SampleEncoder.ignoreIndex { lossTokens += 1 }
            }
        }
        var inputs = ModelInputs(inputIDs: Tensor(indices: ids, shape: [b, t]),          // (B, T)
                                 attentionMask: Tensor(indices: attention, shape: [b, t]))   // (B, T)
        let clipPixels = samples.compactMap(\.clipPixels)
        if !clipPixels.isEmpty {
            inputs.pixelValues = clipPixels.count == 1 ? clipPixels[0] : Tensor.concatenate(clipPixels, axis: 0)   // (I, C, S, S)
        }
        let n = samples.map { $0.images?.numTiles[0].count ?? 0 }.max() ?? 0
        if n > 0 {
            let g = processor.imageProcessor.config.maxImageTiles, side = processor.imageProcessor.tileSize
            let imageStride = g * 3 * side * side
            let pixels = Tensor(zeros: [b, n, g, 3, side, side])                             // (B, N, G, C, t, t)
            var aspectIDs = [Int](repeating: 0, count: b * n)
            var aspectMask = [Int](repeating: 0, count: b * n * g)
            var cross = [Int](repeating: 0, count: b * t * n * g)
            for (row, prepared) in samples.enumerated() {
                guard let images = prepared.images else { continue }
                let count = images.numTiles[0].count
                let source = images.pixelValues.contiguous()
                (pixels.floatPointer + row * n * imageStride).update(from: source.floatPointer, count: count * imageStride)
                let sampleIDs = images.aspectRatioIDs.integers(), sampleMask = images.aspectRatioMask.integers()
                for image in 0 ..< count {
                    aspectIDs[row * n + image] = sampleIDs[image]
                    for tile in 0 ..< g { aspectMask[(row * n + image) * g + tile] = sampleMask[image * g + tile] }
                }
                let paddedRow = Array(ids[row * t ..< (row + 1) * t])
                let ranges = MllamaProcessor.crossAttentionRanges(tokenIDs: paddedRow, imageTokenID: processor.imageTokenID)
                for (image, range) in ranges.enumerated() where image < count {
                    for token in range {
                        let base = ((row * t + token) * n + image) * g
                        for tile in 0 ..< images.numTiles[0][image] { cross[base + tile] = 1 }
                    }
                }
            }
            for slot in 0 ..< b * n { aspectMask[slot * g] = 1 }
            inputs.pixelValues = pixels
            inputs.aspectRatioIDs = Tensor(indices: aspectIDs, shape: [b, n])                // (B, N)
            inputs.aspectRatioMask = Tensor(indices: aspectMask, shape: [b, n, g])           // (B, N, G)
            inputs.crossAttentionMask = Tensor(indices: cross, shape: [b, t, n, g])          // (B, T, N, G)
        }
        return TrainingBatch(inputs: inputs, labels: Tensor(indices: labels, shape: [b, t]), lossTokenCount: lossTokens,
                             sampleIDs: samples.map(\.sample.id))
    }
}

extension TrainingBatch {
    /// The batch with the images of the first of `groups` equal row groups only
    /// (``ModelInputs/imageRowGroups``), for rows that come in groups showing the same images in the
    /// same order — a preference batch's chosen, rejected (and edited) rows — so that each image is
    /// encoded once per step instead of once per group.
    func sharingImages(acrossGroups groups: Int) -> TrainingBatch {
        guard groups > 1, let pixels = inputs.pixelValues else { return self }
        let rows = inputs.batchSize / groups
        var copy = self
        copy.inputs.pixelValues = pixels.slice(axis: 0, 0..<rows).contiguous()
        copy.inputs.aspectRatioIDs = inputs.aspectRatioIDs?.slice(axis: 0, 0..<rows).contiguous()
        copy.inputs.aspectRatioMask = inputs.aspectRatioMask?.slice(axis: 0, 0..<rows).contiguous()
        copy.inputs.imageRowGroups = groups
        return copy
    }
}
