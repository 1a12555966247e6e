import Checkpoint
import TensorCore

/// The image tensors of an mllama forward pass, checked against the model's vision config so that
/// a wrong dtype, shape or id is a message naming the tensor instead of a crash inside the model.
struct MllamaImageInputs {
    let pixelValues: Tensor?
    let aspectRatioIds: Tensor?
    let aspectRatioMask: Tensor?
    let crossAttentionMask: Tensor?

    /// - Throws: ``CommandFailure`` naming `source` and the tensor.
    init(pixelValues: Tensor?, aspectRatioIds: Tensor?, aspectRatioMask: Tensor?, crossAttentionMask: Tensor?,
         inputIds: Tensor, vision: MllamaVisionConfig, source: String) throws {
        func fail(_ reason: String) -> CommandFailure { CommandFailure("\(source): \(reason)") }
        func isInteger(_ t: Tensor) -> Bool { t.dtype == .int64 || t.dtype == .int32 }
        let (b, t) = (inputIds.shape[0], inputIds.shape[1])
        guard let pixelValues else {
            let extra = [("aspect_ratio_ids", aspectRatioIds), ("aspect_ratio_mask", aspectRatioMask),
                         ("cross_attention_mask", crossAttentionMask)].filter { $0.1 != nil }.map(\.0)
            guard extra.isEmpty else { throw fail("\(extra.joined(separator: ", ")) given without pixel_values") }
            self.pixelValues = nil
            self.aspectRatioIds = nil
            self.aspectRatioMask = nil
            self.crossAttentionMask = nil
            return
        }
        guard pixelValues.dtype == .float32 else {
            throw fail("pixel_values must be float32 (as the image processor writes them), got \(pixelValues.dtype)")
        }
        let size = vision.imageSize, tiles = vision.maxNumTiles, channels = vision.numChannels
        guard pixelValues.rank == 6, pixelValues.shape[0] == b, pixelValues.shape[2] == tiles,
              pixelValues.shape[3] == channels, pixelValues.shape[4] == size, pixelValues.shape[5] == size
        else {
            throw fail("pixel_values must be [B, N, tiles, C, H, W] = [\(b), N, \(tiles), \(channels), \(size), \(size)] "
                       + "for this model (image_size \(size), max_num_tiles \(tiles)), got \(pixelValues.shape)")
        }
        let n = pixelValues.shape[1]
        guard let aspectRatioIds else { throw fail("pixel_values needs aspect_ratio_ids beside it") }
        guard isInteger(aspectRatioIds), aspectRatioIds.shape == [b, n] else {
            throw fail("aspect_ratio_ids must be int64 or int32 [B, N] = [\(b), \(n)], got \(aspectRatioIds.dtype) \(aspectRatioIds.shape)")
        }
        let ratios = vision.supportedAspectRatios.count
        if let bad = aspectRatioIds.integers().first(where: { $0 < 0 || $0 > ratios }) {
            throw fail("aspect_ratio_ids holds \(bad); this model has \(ratios) supported aspect ratios (ids 1…\(ratios), 0 for padding)")
        }
        if let aspectRatioMask {
            guard isInteger(aspectRatioMask), aspectRatioMask.shape == [b, n, tiles] else {
                throw fail("aspect_ratio_mask must be int64 or int32 [B, N, tiles] = [\(b), \(n), \(tiles)], "
                           + "got \(aspectRatioMask.dtype) \(aspectRatioMask.shape)")
            }
        }
        if let crossAttentionMask {
            guard crossAttentionMask.shape == [b, t, n, tiles] else {
                throw fail("cross_attention_mask must be [B, T, N, tiles] = [\(b), \(t), \(n), \(tiles)], got \(crossAttentionMask.shape)")
            }
            guard isInteger(crossAttentionMask) || crossAttentionMask.dtype.isFloatingPoint else {
                throw fail("cross_attention_mask must hold integers or floats, got \(crossAttentionMask.dtype)")
            }
        }
        self.pixelValues = pixelValues
        self.aspectRatioIds = aspectRatioIds
        self.aspectRatioMask = aspectRatioMask
        self.crossAttentionMask = crossAttentionMask
    }
}
