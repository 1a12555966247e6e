import Media
import TensorCore
import Tokenization

// Shape legend: B samples, T text tokens (padded), I images in the batch, C = 3 channels, h×w the crop.

/// Prompts and images turned into everything `LlavaForConditionalGeneration` takes.
public struct LlavaBatch {
    /// (B, T) int64, each `<image>` expanded to its image tokens, padded with ``LlavaProcessor/padTokenID``.
    public var inputIDs: Tensor
    /// (B, T) int64: 1 on real tokens, 0 on padding.
    public var attentionMask: Tensor
    /// (I, C, h, w) float32, the images of every sample in order; nil when there are none.
    public var pixelValues: Tensor?
    /// The unpadded, expanded token ids of each sample.
    public var tokenIDs: [[Int]]
}

/// transformers' `LlavaProcessor`: each `<image>` in a prompt becomes as many `<image>` tokens as
/// the vision tower gives the projector features — `(h / patch_size)·(w / patch_size) +
/// num_additional_image_tokens`, less one under `vision_feature_select_strategy: default` — with
/// h×w the processed image size; the images go through ``CLIPImageProcessor``.
///
/// llava-hf's LLaVA-1.5 processors use `patch_size: 14`, `num_additional_image_tokens: 1` (CLIP's
/// class token) and `default`: 576 tokens per 336-pixel image.
public struct LlavaProcessor: Sendable {
    public enum PaddingSide: String, Sendable { case left, right }

    public let imageProcessor: CLIPImageProcessor
    public let tokenizer: Tokenizer
    public let imageToken: String
    public let imageTokenID: Int
    public let patchSize: Int
    public let numAdditionalImageTokens: Int
    /// `default` (the class token is dropped) or `full`.
    public let visionFeatureSelectStrategy: String
    public var padTokenID: Int
    public var paddingSide: PaddingSide

    /// - Throws: ``ProcessingError`` when the tokenizer does not know `imageToken` as a special
    ///   token, or the strategy is neither `default` nor `full`.
    public init(imageProcessor: CLIPImageProcessor, tokenizer: Tokenizer, patchSize: Int, numAdditionalImageTokens: Int = 1,
                visionFeatureSelectStrategy: String = "default", imageToken: String = "<image>", padTokenID: Int = 0,
                paddingSide: PaddingSide = .right) throws {
        guard let id = tokenizer.specialTokenID(imageToken) else {
            throw ProcessingError("the tokenizer has no special token \(imageToken) (pass it as an extra special token)")
        }
        guard ["default", "full"].contains(visionFeatureSelectStrategy) else {
            throw ProcessingError("vision_feature_select_strategy must be 'default' or 'full', got '\(visionFeatureSelectStrategy)'")
        }
        guard patchSize > 0 else { throw ProcessingError("patch_size must be positive, got \(patchSize)") }
        self.imageProcessor = imageProcessor
        self.tokenizer = tokenizer
        self.imageToken = imageToken
        self.imageTokenID = id
        self.patchSize = patchSize
        self.numAdditionalImageTokens = numAdditionalImageTokens
        self.visionFeatureSelectStrategy = visionFeatureSelectStrategy
        self.padTokenID = padTokenID
        self.paddingSide = paddingSide
    }

    /// Image tokens for an image processed to `height × width` pixels.
    public func imageTokenCount(height: Int, width: Int) -> Int {
        (height / patchSize) * (width / patchSize) + numAdditionalImageTokens - (visionFeatureSelectStrategy == "default" ? 1 : 0)
    }

    /// `ids` with every image token repeated `count` times.
    public func expandingImageTokens(_ ids: [Int], count: Int) -> [Int] {
        ids.flatMap { $0 == imageTokenID ? Array(repeating: $0, count: count) : [$0] }
    }

    /// Processes a batch: `prompts[b]` (encoded with the tokenizer's special tokens, as
    /// transformers' processor calls its tokenizer) with its images `images[b]`, one per `<image>`.
    /// - Throws: ``ProcessingError`` naming the sample when its `<image>` count and image count differ.
    public func process(prompts: [String], images: [[Image]]) throws -> LlavaBatch {
        try process(tokenIDs: prompts.map { tokenizer.encode($0, addingSpecialTokens: true, allowSpecial: true) }, images: images)
    }

    /// Processes complete token ids (a rendered chat) with one `<image>` id per image, not yet expanded.
    /// - Throws: ``ProcessingError`` as ``process(prompts:images:)``.
    public func process(tokenIDs unexpanded: [[Int]], images: [[Image]]) throws -> LlavaBatch {
        guard !unexpanded.isEmpty else { throw ProcessingError("no prompts to process") }
        guard images.isEmpty || images.count == unexpanded.count else {
            throw ProcessingError("\(unexpanded.count) prompts but \(images.count) lists of images (give one list per prompt, empty for none)")
        }
        let images = images.isEmpty ? Array(repeating: [Image](), count: unexpanded.count) : images
        for (index, (ids, sampleImages)) in zip(unexpanded, images).enumerated() {
            let markers = ids.count(where: { $0 == imageTokenID })
            if markers != sampleImages.count {
                throw ProcessingError("\(unexpanded.count > 1 ? "sample \(index): " : "")the prompt has \(markers) \(imageToken) "
                                      + "token\(markers == 1 ? "" : "s") but \(sampleImages.count) image\(sampleImages.count == 1 ? " was" : "s were") given")
            }
        }
        let flat = images.flatMap { $0 }
        var pixelValues: Tensor? = nil
        var rows = unexpanded
        if !flat.isEmpty {
            let pixels = try imageProcessor.preprocess(flat)                                   // (I, C, h, w)
            let count = imageTokenCount(height: pixels.shape[2], width: pixels.shape[3])
            rows = unexpanded.map { expandingImageTokens($0, count: count) }
            pixelValues = pixels
        }
        let length = rows.map(\.count).max()!
        var ids: [Int] = [], attention: [Int] = []
        for row in rows {
            let padding = Array(repeating: padTokenID, count: length - row.count), zeros = Array(repeating: 0, count: length - row.count)
            let ones = Array(repeating: 1, count: row.count)
            ids += paddingSide == .right ? row + padding : padding + row
            attention += paddingSide == .right ? ones + zeros : zeros + ones
        }
        return LlavaBatch(inputIDs: Tensor(indices: ids, shape: [rows.count, length]),            // (B, T)
                          attentionMask: Tensor(indices: attention, shape: [rows.count, length]), // (B, T)
                          pixelValues: pixelValues, tokenIDs: rows)
    }
}
