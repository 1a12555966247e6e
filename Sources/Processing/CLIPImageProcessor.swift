import Checkpoint
import Media
import TensorCore

// Shape legend: I images, C = 3 channels, h×w the crop size.

/// transformers' `CLIPImageProcessor`, and with `do_pad` its `LlavaImageProcessor` (LLaVA-1.5's
/// `expand2square`), reproduced for 8-bit images as their PIL backend computes them.
///
/// For each image: composite RGBA onto white; with `do_pad`, pad to a square of the longer side,
/// the image centred (offset `(long − short) / 2`, floored) on the colour `int(mean · 255)`;
/// resize so the shortest edge is `size.shortest_edge` (the other edge `int(edge · long / short)`)
/// with Pillow's filter, or to `size.height × size.width`; centre-crop to `crop_size` (top-left at
/// `⌊(side − crop) / 2⌋`, zero samples where the crop leaves the image); rescale and normalise.
///
/// ```swift
/// let processor = try CLIPImageProcessor(config: .load(from: folder.appendingPathComponent("preprocessor_config.json")))
/// let pixels = try processor.preprocess([try loadImage(path: "cat.jpg")])   // [1, 3, 336, 336]
/// ```
public struct CLIPImageProcessor: Sendable {
    public let config: CLIPImageProcessorConfig
    let filter: ResampleFilter
    /// The output of each 8-bit sample per channel (see ``pixelNormalizationTable(doRescale:rescaleFactor:doNormalize:mean:std:)``).
    let lookup: [[Float]]

    /// - Throws: ``ProcessingError`` naming the setting for a size without `shortest_edge` or
    ///   `height`/`width`, a crop without both sides, or the nearest-neighbour filter (not implemented).
    public init(config: CLIPImageProcessorConfig) throws {
        if config.doResize {
            guard config.size.shortestEdge.map({ $0 > 0 }) ?? false
                    || (config.size.height.map { $0 > 0 } ?? false && config.size.width.map { $0 > 0 } ?? false) else {
                throw ProcessingError("preprocessor config: size must have a positive 'shortest_edge' or 'height' and 'width', got \(config.size)")
            }
            if config.size.shortestEdge != nil && config.size.longestEdge != nil {
                throw ProcessingError("preprocessor config: size with both 'shortest_edge' and 'longest_edge' is not supported")
            }
        }
        if config.doCenterCrop {
            guard let h = config.cropSize.height, let w = config.cropSize.width, h > 0, w > 0 else {
                throw ProcessingError("preprocessor config: crop_size must have positive 'height' and 'width', got \(config.cropSize)")
            }
        }
        guard let filter = ResampleFilter(rawValue: config.resample), filter != .nearest else {
            throw ProcessingError("preprocessor config: resample = \(config.resample) is not supported (use 1-5: lanczos, bilinear, bicubic, box, hamming)")
        }
        self.config = config
        self.filter = filter
        lookup = pixelNormalizationTable(doRescale: config.doRescale, rescaleFactor: config.rescaleFactor,
                                         doNormalize: config.doNormalize, mean: config.imageMean, std: config.imageStd)
    }

    /// The output size `(height, width)` of an image of this size (what the crop, or else the resize, gives).
    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        if config.doCenterCrop { return (config.cropSize.height!, config.cropSize.width!) }
        let side = config.doPad ? max(height, width) : nil
        return resizedSize(height: side ?? height, width: side ?? width)
    }

    /// transformers' `get_resize_output_image_size` with `default_to_square = False`.
    func resizedSize(height: Int, width: Int) -> (height: Int, width: Int) {
        guard config.doResize else { return (height, width) }
        guard let edge = config.size.shortestEdge else { return (config.size.height!, config.size.width!) }
        let (short, long) = width <= height ? (width, height) : (height, width)
        let newLong = Int(Double(edge * long) / Double(short))
        return width <= height ? (newLong, edge) : (edge, newLong)
    }

    /// The image as transformers sees it before rescaling: RGB, padded to a square when asked,
    /// resized (8-bit samples, not yet cropped).
    public func resized(_ image: Image) throws -> Image {
        var rgb = image
        if image.layout == .rgba {
            guard config.doConvertRgb else {
                throw ProcessingError("an RGBA image needs do_convert_rgb = true (transformers would pass 4 channels on)")
            }
            rgb = image.composited(onto: .white)
        }
        if config.doPad { rgb = paddedToSquare(rgb) }
        let (height, width) = resizedSize(height: rgb.height, width: rgb.width)
        guard height != rgb.height || width != rgb.width else { return rgb }
        return resizedLikePillow(rgb, width: width, height: height, filter: filter)
    }

    /// The image centred on a square of its longer side filled with `int(mean · 255)` per channel.
    func paddedToSquare(_ image: Image) -> Image {
        let side = max(image.width, image.height)
        guard image.width != image.height else { return image }
        let colour = config.imageMean.map { UInt8(clamping: Int($0 * 255)) }
        var pixels = [UInt8](repeating: 0, count: side * side * 3)
        for index in 0 ..< side * side { pixels.replaceSubrange((index * 3) ..< (index * 3 + 3), with: colour) }
        let top = (side - image.height) / 2, left = (side - image.width) / 2
        for y in 0 ..< image.height {
            let source = y * image.width * 3, destination = ((top + y) * side + left) * 3
            pixels.replaceSubrange(destination ..< (destination + image.width * 3),
                                   with: image.pixels[source ..< (source + image.width * 3)])
        }
        return Image(width: side, height: side, layout: .rgb, pixels: pixels)
    }

    /// Writes one resized image, centre-cropped and normalised, at `destination` `(C, h, w)`.
    func writeCropped(_ image: Image, height: Int, width: Int, to destination: UnsafeMutablePointer<Float>) {
        // numpy's floor division: negative when the crop is larger (then the outside is zero samples).
        func floorHalf(_ value: Int) -> Int { value >= 0 ? value / 2 : -((-value + 1) / 2) }
        let top = floorHalf(image.height - height), left = floorHalf(image.width - width)
        image.pixels.withUnsafeBufferPointer { pixels in
            for channel in 0 ..< 3 {
                let table = lookup[channel], plane = destination + channel * height * width
                for y in 0 ..< height {
                    let sourceY = y + top
                    for x in 0 ..< width {
                        let sourceX = x + left
                        let inside = sourceY >= 0 && sourceY < image.height && sourceX >= 0 && sourceX < image.width
                        plane[y * width + x] = table[inside ? Int(pixels[(sourceY * image.width + sourceX) * 3 + channel]) : 0]
                    }
                }
            }
        }
    }

    /// Processes images into `[I, 3, h, w]` float32 pixel values.
    /// - Throws: ``ProcessingError`` when there are no images, they would come out at different
    ///   sizes (no crop, different aspect ratios), or an RGBA image meets `do_convert_rgb = false`.
    public func preprocess(_ images: [Image]) throws -> Tensor {
        guard !images.isEmpty else { throw ProcessingError("no images to process") }
        var resized: [Image] = []
        for (index, image) in images.enumerated() {
            do { resized.append(try self.resized(image)) } catch let error as ProcessingError {
                throw ProcessingError("image \(index): \(error.message)")
            }
        }
        let (height, width) = config.doCenterCrop ? (config.cropSize.height!, config.cropSize.width!)
            : (resized[0].height, resized[0].width)
        if let odd = resized.firstIndex(where: { !config.doCenterCrop && ($0.height != height || $0.width != width) }) {
            throw ProcessingError("image \(odd) comes out \(resized[odd].height)x\(resized[odd].width), image 0 \(height)x\(width): "
                                  + "without do_center_crop the images cannot be stacked")
        }
        var pixels = [Float](repeating: 0, count: images.count * 3 * height * width)
        pixels.withUnsafeMutableBufferPointer { buffer in
            for (index, image) in resized.enumerated() {
                writeCropped(image, height: height, width: width, to: buffer.baseAddress! + index * 3 * height * width)
            }
        }
        return Tensor(pixels, shape: [images.count, 3, height, width])   // (I, C, h, w)
    }
}
