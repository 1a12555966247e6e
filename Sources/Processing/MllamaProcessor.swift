import Media
import TensorCore
import Tokenization

// Shape legend: B samples, T text tokens (padded), N images per sample (padded), G tiles per image.

/// Prompts and images turned into everything `MllamaForConditionalGeneration` takes.
public struct MllamaBatch {
    /// (B, T) int64, padded with ``MllamaProcessor/padTokenID`` on ``MllamaProcessor/paddingSide``.
    public var inputIDs: Tensor
    /// (B, T) int64: 1 on real tokens, 0 on padding.
    public var attentionMask: Tensor
    /// (B, T, N, G) int64: 1 where token `t` may attend to tile `g` of image `n`; nil without images.
    public var crossAttentionMask: Tensor?
    /// The image processor's output; nil when no sample has an image.
    public var images: MllamaImageBatch?
    /// The unpadded token ids of each sample.
    public var tokenIDs: [[Int]]
}

/// transformers 4.45.2's `MllamaProcessor`: tokenises prompts that carry `<|image|>` markers,
/// processes each sample's images, and builds the cross-attention mask.
///
/// **Token ids.** As transformers' `build_string_from_input`: a prompt that does not contain
/// `<|begin_of_text|>` gets it inserted after any `<|image|>` tokens it starts with; then the
/// tokenizer adds its special tokens (``Tokenization/Tokenizer/encode(_:addingSpecialTokens:allowSpecial:)``),
/// which its files decide: Llama 3.2's `tokenizer.json` prepends another `<|begin_of_text|>`, so
/// `"<|image|>Hi"` becomes `<|begin_of_text|><|image|><|begin_of_text|>Hi` as the published
/// processor gives; the Llama 3.0 file adds nothing, giving `<|image|><|begin_of_text|>Hi`.
/// Text that is already formatted (a chat) goes through ``process(tokenIDs:images:)`` instead.
///
/// **Cross-attention mask.** Computed on the padded ids, per sample (`get_cross_attention_token_mask`):
/// image `i` is seen from its `<|image|>` token up to (not including) the next `<|image|>` token;
/// the last image up to the end of the padded row; and a run of consecutive image tokens shares
/// the end of the run's last image, so `<|image|><|image|>text` lets the text see both. Only the
/// image's real tiles (its `num_tiles`) are set; tokens before the first image see nothing.
public struct MllamaProcessor: Sendable {
    public enum PaddingSide: String, Sendable { case left, right }

    public let imageProcessor: MllamaImageProcessor
    public let tokenizer: Tokenizer
    public let imageToken: String
    public let imageTokenID: Int
    public let beginOfTextToken: String
    public let beginOfTextTokenID: Int
    /// The id padded rows are filled with (Llama 3.2's `<|finetune_right_pad_id|>`, 128004, by default).
    public var padTokenID: Int
    /// Where padding goes (transformers' tokenizer default is right).
    public var paddingSide: PaddingSide

    /// - Throws: ``ProcessingError`` when the tokenizer does not know `imageToken` or `beginOfTextToken`
    ///   as special tokens (load it with `extraSpecialTokens: ["<|image|>": 128256]`).
    public init(imageProcessor: MllamaImageProcessor, tokenizer: Tokenizer, imageToken: String = "<|image|>",
                beginOfTextToken: String = "<|begin_of_text|>", padTokenID: Int = 128004,
                paddingSide: PaddingSide = .right) throws {
        guard let imageID = tokenizer.specialTokenID(imageToken) else {
            throw ProcessingError("the tokenizer has no special token \(imageToken) (pass it as an extra special token, e.g. \(imageToken)=128256)")
        }
        guard let bosID = tokenizer.specialTokenID(beginOfTextToken) else {
            throw ProcessingError("the tokenizer has no special token \(beginOfTextToken)")
        }
        self.imageProcessor = imageProcessor
        self.tokenizer = tokenizer
        self.imageToken = imageToken
        self.imageTokenID = imageID
        self.beginOfTextToken = beginOfTextToken
        self.beginOfTextTokenID = bosID
        self.padTokenID = padTokenID
        self.paddingSide = paddingSide
    }

    /// The prompt with `<|begin_of_text|>` placed as transformers' `build_string_from_input` does:
    /// unchanged when it already contains one, else inserted after the leading `<|image|>` tokens.
    public func promptWithBeginOfText(_ prompt: String) -> String {
        if prompt.contains(beginOfTextToken) { return prompt }
        var rest = Substring(prompt)
        var leadingImages = 0
        while rest.hasPrefix(imageToken) {
            rest = rest.dropFirst(imageToken.count)
            leadingImages += 1
        }
        return String(repeating: imageToken, count: leadingImages) + beginOfTextToken + rest
    }

    /// Token ids of one prompt, unpadded: ``promptWithBeginOfText(_:)`` encoded with the
    /// tokenizer's special tokens, as transformers' processor calls its tokenizer.
    public func tokenIDs(for prompt: String) -> [Int] {
        tokenizer.encode(promptWithBeginOfText(prompt), addingSpecialTokens: true, allowSpecial: true)
    }

    /// Processes a batch: `prompts[b]` with its images `images[b]`, one image per `<|image|>` in order.
    ///
    /// ```swift
    /// let batch = try processor.process(prompts: ["<|image|>Describe this."], images: [[photo]])
    /// batch.inputIDs.shape              // [1, 6] with Llama 3.2's tokenizer: BOS, <|image|>, BOS, "Describe", " this", "."
    /// batch.crossAttentionMask!.shape   // [1, 6, 1, 4]
    /// ```
    ///
    /// - Throws: ``ProcessingError`` naming the sample when the number of `<|image|>` markers in its
    ///   prompt differs from the number of images given for it, or when `images` does not have one
    ///   list per prompt, or when some samples have images and others none (transformers refuses
    ///   such batches too); errors from ``MllamaImageProcessor/preprocess(_:)``.
    public func process(prompts: [String], images: [[Image]]) throws -> MllamaBatch {
        guard !prompts.isEmpty else { throw ProcessingError("no prompts to process") }
        guard images.count == prompts.count || (images.isEmpty) else {
            throw ProcessingError("\(prompts.count) prompts but \(images.count) lists of images (give one list per prompt, empty for none)")
        }
        return try process(tokenIDs: prompts.map(tokenIDs(for:)), images: images)
    }

    /// Processes token ids that are already complete — a conversation from
    /// ``Tokenization/Llama3ChatFormat``, as transformers' `apply_chat_template` hands its rendered
    /// text to the processor without adding special tokens — with `images[b]` for sample `b`, one
    /// per `<|image|>` id in order. Padding, the cross-attention mask and the image inputs are as
    /// in ``process(prompts:images:)``.
    ///
    /// - Throws: ``ProcessingError`` as ``process(prompts:images:)``.
    public func process(tokenIDs unpadded: [[Int]], images: [[Image]]) throws -> MllamaBatch {
        guard !unpadded.isEmpty else { throw ProcessingError("no prompts to process") }
        guard images.count == unpadded.count || (images.isEmpty) else {
            throw ProcessingError("\(unpadded.count) prompts but \(images.count) lists of images (give one list per prompt, empty for none)")
        }
        let images = images.isEmpty ? Array(repeating: [Image](), count: unpadded.count) : images
        for (index, (ids, sampleImages)) in zip(unpadded, images).enumerated() {
            let markers = ids.count(where: { $0 == imageTokenID })
            if markers != sampleImages.count {
                throw ProcessingError("\(unpadded.count > 1 ? "sample \(index): " : "")the prompt has \(markers) \(imageToken) token\(markers == 1 ? "" : "s") but \(sampleImages.count) image\(sampleImages.count == 1 ? " was" : "s were") given")
            }
        }

        // As transformers 4.45.2: a batch is all text-only or has images in every sample.
        if let empty = images.firstIndex(where: \.isEmpty), images.contains(where: { !$0.isEmpty }) {
            throw ProcessingError("sample \(empty): no images, while other samples have some (every sample needs at least one image, or none may have any)")
        }

        let length = unpadded.map(\.count).max()!
        var ids: [Int] = [], attention: [Int] = []
        var paddedRows: [[Int]] = []
        for row in unpadded {
            let padding = Array(repeating: padTokenID, count: length - row.count)
            let mask = Array(repeating: 1, count: row.count), zeros = Array(repeating: 0, count: length - row.count)
            let padded = paddingSide == .right ? row + padding : padding + row
            paddedRows.append(padded)
            ids += padded
            attention += paddingSide == .right ? mask + zeros : zeros + mask
        }
        let b = unpadded.count
        var batch = MllamaBatch(inputIDs: Tensor(indices: ids, shape: [b, length]),         // (B, T)
                                attentionMask: Tensor(indices: attention, shape: [b, length]),  // (B, T)
                                crossAttentionMask: nil, images: nil, tokenIDs: unpadded)
        guard images.contains(where: { !$0.isEmpty }) else { return batch }

        let imageBatch = try imageProcessor.preprocess(images)
        let n = images.map(\.count).max()!, g = imageProcessor.config.maxImageTiles
        var dense = [Int](repeating: 0, count: b * length * n * g)
        for (sample, row) in paddedRows.enumerated() {
            for (image, range) in Self.crossAttentionRanges(tokenIDs: row, imageTokenID: imageTokenID).enumerated() {
                let tiles = imageBatch.numTiles[sample][image]
                for token in range {
                    let base = ((sample * length + token) * n + image) * g
                    for tile in 0 ..< tiles { dense[base + tile] = 1 }
                }
            }
        }
        batch.crossAttentionMask = Tensor(indices: dense, shape: [b, length, n, g])   // (B, T, N, G)
        batch.images = imageBatch
        return batch
    }

    /// For each `<|image|>` token in `tokenIDs`, the token positions that may see that image
    /// (transformers' `get_cross_attention_token_mask`): from the image token to the next image
    /// token, the last to the end; consecutive image tokens all run to where the run's last one ends.
    ///
    /// `[I, I, a, b, I, c]` (I the image token) gives `0..<4`, `1..<4`, `4..<6`.
    public static func crossAttentionRanges(tokenIDs: [Int], imageTokenID: Int) -> [Range<Int>] {
        let locations = tokenIDs.indices.filter { tokenIDs[$0] == imageTokenID }
        guard !locations.isEmpty else { return [] }
        var ends = locations.dropFirst().map { $0 } + [tokenIDs.count]
        // Walk back: an image whose range is only its own token (the next token is an image too)
        // takes the end of the following one.
        var laterEnd = ends[ends.count - 1]
        for i in stride(from: locations.count - 1, through: 0, by: -1) {
            if locations[i] == ends[i] - 1 { ends[i] = laterEnd }
            laterEnd = ends[i]
        }
        return zip(locations, ends).map { $0 ..< $1 }
    }
}
