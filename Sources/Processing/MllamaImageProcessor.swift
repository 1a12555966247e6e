import Checkpoint
import Media
import TensorCore

// Shape legend: B samples, N images per sample (padded), G tiles per image (max_image_tiles),
// C = 3 channels, t tile side in pixels.

// MARK: - Tile arrangements

/// A grid of tiles an image is laid out on: `rows` tiles down, `columns` across.
public struct TileArrangement: Hashable, Sendable, CustomStringConvertible {
    public var rows: Int
    public var columns: Int

    public init(rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
    }

    public var tileCount: Int { rows * columns }
    public var description: String { "\(rows)x\(columns)" }

    /// Every arrangement of at most `maxTiles` tiles, in transformers' order (`get_all_supported_aspect_ratios`):
    /// `rows` outer, `columns` inner, both from 1. An image's `aspect_ratio_id` is its index here plus 1.
    ///
    /// For 4 tiles: 1x1, 1x2, 1x3, 1x4, 2x1, 2x2, 3x1, 4x1.
    public static func all(maxTiles: Int) -> [TileArrangement] {
        MllamaVisionConfig.supportedAspectRatios(maxNumTiles: maxTiles).map { TileArrangement(rows: $0[0], columns: $0[1]) }
    }

    /// The arrangement transformers' `get_optimal_tiled_canvas` picks for an image.
    ///
    /// Each canvas (rows·t × columns·t) scales the image by `min(canvasHeight / height, canvasWidth / width)`.
    /// The smallest scale ≥ 1 wins (the least upscaling that fits); when every scale is below 1, the
    /// largest (the least downscaling). Among canvases with exactly that scale, the smallest area,
    /// and among those the first in ``all(maxTiles:)``.
    public static func optimal(height: Int, width: Int, maxTiles: Int, tileSize: Int) -> TileArrangement {
        let candidates = all(maxTiles: maxTiles)
        let scales = candidates.map { arrangement -> Double in
            let scaleHeight = Double(arrangement.rows * tileSize) / Double(height)
            let scaleWidth = Double(arrangement.columns * tileSize) / Double(width)
            return scaleWidth > scaleHeight ? scaleHeight : scaleWidth
        }
        let upscales = scales.filter { $0 >= 1 }
        let selected = upscales.isEmpty ? scales.max()! : upscales.min()!
        var best: TileArrangement?
        for (arrangement, scale) in zip(candidates, scales) where scale == selected {
            if best == nil || arrangement.tileCount < best!.tileCount { best = arrangement }
        }
        return best!
    }
}

/// The size transformers' `get_image_size_fit_to_canvas` resizes an image to: each side clamped
/// between one tile and the canvas, then the image scaled by the smaller of the two clamped ratios,
/// the other side floored (at least 1 pixel).
func _sizeFittingCanvas(height: Int, width: Int, canvasHeight: Int, canvasWidth: Int,
                        tileSize: Int) -> (height: Int, width: Int) {
    let targetWidth = min(max(width, tileSize), canvasWidth)
    let targetHeight = min(max(height, tileSize), canvasHeight)
    let scaleHeight = Double(targetHeight) / Double(height)
    let scaleWidth = Double(targetWidth) / Double(width)
    if scaleWidth < scaleHeight {
        return (min(max(Int((Double(height) * scaleWidth).rounded(.down)), 1), targetHeight), targetWidth)
    }
    return (targetHeight, min(max(Int((Double(width) * scaleHeight).rounded(.down)), 1), targetWidth))
}

// MARK: - The image processor

/// Images turned into Mllama vision inputs, padded to the batch's most images and to `max_image_tiles`.
public struct MllamaImageBatch {
    /// (B, N, G, C, t, t) float32. Padding tiles and padding images are zero.
    public var pixelValues: Tensor
    /// (B, N) int64: 1 + the index of each image's arrangement in ``TileArrangement/all(maxTiles:)``, 0 for padding.
    public var aspectRatioIDs: Tensor
    /// (B, N, G) int64: 1 for each image's tiles, and always for tile 0 (also of padding images, as transformers does).
    public var aspectRatioMask: Tensor
    /// Tiles per image, per sample (unpadded).
    public var numTiles: [[Int]]
    /// The arrangement chosen for each image, per sample.
    public var arrangements: [[TileArrangement]]
}

/// transformers 4.45.2's `MllamaImageProcessor`, reproduced exactly for 8-bit images.
///
/// For each image: composite RGBA onto white, pick a ``TileArrangement`` of at most
/// `max_image_tiles` tiles, resize (keeping the aspect ratio) with Pillow's filter, pad with black
/// at the bottom and right to fill the grid, rescale by `rescale_factor`, normalise with
/// `image_mean` / `image_std`, and cut into tiles row by row.
///
/// ```swift
/// let processor = try MllamaImageProcessor(config: .load(from: modelDirectory.appendingPathComponent("preprocessor_config.json")))
/// let batch = try processor.preprocess([[try loadImage(path: "cat.jpg")]])
/// batch.pixelValues.shape   // [1, 1, 4, 3, 560, 560]
/// ```
public struct MllamaImageProcessor: Sendable {
    public let config: MllamaImageProcessorConfig
    /// The tile side in pixels (`size.height`).
    public let tileSize: Int
    let filter: ResampleFilter
    /// Per channel, the output value of each 8-bit sample: `Float(Double(v) * rescale)`, then
    /// `(x - Float(mean)) / Float(std)` in float32, the operations numpy performs.
    let lookup: [[Float]]

    /// - Throws: ``ProcessingError`` naming the setting when the configuration asks for what
    ///   transformers' processor refuses (`do_pad` or `do_resize` false, a non-square `size`,
    ///   `max_image_tiles` < 1) or for the nearest-neighbour filter, which is not implemented.
    public init(config: MllamaImageProcessorConfig) throws {
        guard config.doPad else { throw ProcessingError("preprocessor config: do_pad = false is not supported (nor by transformers)") }
        guard config.doResize else { throw ProcessingError("preprocessor config: do_resize = false is not supported (nor by transformers)") }
        guard let height = config.size.height, let width = config.size.width, height == width, height > 0 else {
            throw ProcessingError("preprocessor config: size must have equal, positive 'height' and 'width', got \(config.size)")
        }
        guard config.maxImageTiles >= 1 else {
            throw ProcessingError("preprocessor config: max_image_tiles must be at least 1, got \(config.maxImageTiles)")
        }
        guard let filter = ResampleFilter(rawValue: config.resample), filter != .nearest else {
            throw ProcessingError("preprocessor config: resample = \(config.resample) is not supported (use 1-5: lanczos, bilinear, bicubic, box, hamming)")
        }
        self.config = config
        self.tileSize = height
        self.filter = filter
        lookup = pixelNormalizationTable(doRescale: config.doRescale, rescaleFactor: config.rescaleFactor,
                                         doNormalize: config.doNormalize, mean: config.imageMean, std: config.imageStd)
    }

    /// The arrangement and resized size an image of this size gets.
    public func layout(height: Int, width: Int) -> (arrangement: TileArrangement, height: Int, width: Int) {
        let arrangement = TileArrangement.optimal(height: height, width: width, maxTiles: config.maxImageTiles, tileSize: tileSize)
        let size = _sizeFittingCanvas(height: height, width: width, canvasHeight: arrangement.rows * tileSize,
                                      canvasWidth: arrangement.columns * tileSize, tileSize: tileSize)
        return (arrangement, size.height, size.width)
    }

    /// The image as transformers sees it after `convert_to_rgb` and the resize: RGB, resized.
    public func resized(_ image: Image) throws -> (image: Image, arrangement: TileArrangement) {
        let rgb: Image
        if image.layout == .rgba {
            guard config.doConvertRgb else {
                throw ProcessingError("an RGBA image needs do_convert_rgb = true (transformers would pass 4 channels on)")
            }
            rgb = image.composited(onto: .white)
        } else {
            rgb = image
        }
        let (arrangement, height, width) = layout(height: rgb.height, width: rgb.width)
        let output = height == rgb.height && width == rgb.width ? rgb
            : resizedLikePillow(rgb, width: width, height: height, filter: filter)
        return (output, arrangement)
    }

    /// Writes one resized image's tiles, padded and normalised, at `destination` (G', C, t, t),
    /// G' = the arrangement's tile count.
    func writeTiles(of image: Image, arrangement: TileArrangement, to destination: UnsafeMutablePointer<Float>) {
        let t = tileSize
        let padding = lookup.map { $0[0] }
        image.pixels.withUnsafeBufferPointer { pixels in
            for row in 0 ..< arrangement.rows {
                for column in 0 ..< arrangement.columns {
                    let tile = destination + (row * arrangement.columns + column) * 3 * t * t
                    for channel in 0 ..< 3 {
                        let plane = tile + channel * t * t
                        let table = lookup[channel]
                        for y in 0 ..< t {
                            let sourceY = row * t + y
                            let out = plane + y * t
                            for x in 0 ..< t {
                                let sourceX = column * t + x
                                if sourceY < image.height && sourceX < image.width {
                                    out[x] = table[Int(pixels[(sourceY * image.width + sourceX) * 3 + channel])]
                                } else {
                                    out[x] = padding[channel]   // black padding, normalised like a pixel
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Processes a batch: `samples[b]` are sample `b`'s images, in prompt order.
    ///
    /// - Throws: ``ProcessingError`` when no sample has an image, or an RGBA image meets
    ///   `do_convert_rgb = false`.
    public func preprocess(_ samples: [[Image]]) throws -> MllamaImageBatch {
        let maxImages = samples.map(\.count).max() ?? 0
        guard maxImages > 0 else { throw ProcessingError("no images to process") }
        let g = config.maxImageTiles, t = tileSize
        let b = samples.count
        let imageStride = g * 3 * t * t
        var pixels = [Float](repeating: 0, count: b * maxImages * imageStride)
        var ids = [Int](repeating: 0, count: b * maxImages)
        var mask = [Int](repeating: 0, count: b * maxImages * g)
        var arrangements: [[TileArrangement]] = []
        try pixels.withUnsafeMutableBufferPointer { pixels in
            for (sampleIndex, images) in samples.enumerated() {
                var sampleArrangements: [TileArrangement] = []
                for (imageIndex, image) in images.enumerated() {
                    let resized: Image, arrangement: TileArrangement
                    do { (resized, arrangement) = try self.resized(image) } catch let error as ProcessingError {
                        throw ProcessingError((samples.count > 1 ? "sample \(sampleIndex), " : "") + "image \(imageIndex): \(error.message)")
                    }
                    let slot = sampleIndex * maxImages + imageIndex
                    writeTiles(of: resized, arrangement: arrangement, to: pixels.baseAddress! + slot * imageStride)
                    ids[slot] = TileArrangement.all(maxTiles: g).firstIndex(of: arrangement)! + 1
                    for tile in 0 ..< arrangement.tileCount { mask[slot * g + tile] = 1 }
                    sampleArrangements.append(arrangement)
                }
                arrangements.append(sampleArrangements)
            }
        }
        for slot in 0 ..< b * maxImages { mask[slot * g] = 1 }
        return MllamaImageBatch(
            pixelValues: Tensor(pixels, shape: [b, maxImages, g, 3, t, t]),   // (B, N, G, C, t, t)
            aspectRatioIDs: Tensor(indices: ids, shape: [b, maxImages]),          // (B, N)
            aspectRatioMask: Tensor(indices: mask, shape: [b, maxImages, g]),     // (B, N, G)
            numTiles: arrangements.map { $0.map(\.tileCount) },
            arrangements: arrangements)
    }
}
