import Foundation
import Models
import Processing
import Tokenization

/// A record as token ids with their labels, its images not yet decoded.
public struct EncodedSample: Sendable {
    public var id: String
    public var location: RecordLocation
    /// The input ids, unpadded.
    public var tokenIDs: [Int]
    /// Aligned with `tokenIDs`, unshifted: the token itself where it is learned, ``SampleEncoder/ignoreIndex`` elsewhere.
    public var labels: [Int]
    public var images: [ImageSource]
}

/// Turns records into training token ids and loss labels (Docs/training.md, "Data formats and loss masks").
///
/// - A caption (pretraining): the processor's prompt ids for one `<|image|>` per image, then the
///   caption's tokens, then `<|end_of_text|>`; the caption tokens and `<|end_of_text|>` are learned.
/// - A conversation (SFT): ``Llama3ChatFormat``'s ids; its assistant mask says what is learned (each
///   assistant message's content and the `<|eot_id|>` that ends it).
/// - A question: a one-turn conversation, the images then the question as the user, the answer as the assistant.
///
/// Labels follow transformers' convention: aligned with the inputs, not shifted, −100 where not
/// learned; the loss shifts them. A sample longer than `maxLength` tokens or with more than
/// `maxImages` images is skipped (a ``DataIssue``), never truncated.
public struct SampleEncoder: Sendable {
    /// The label of a position the loss ignores.
    public static let ignoreIndex = -100

    public let processor: MllamaProcessor
    public let chatFormat: Llama3ChatFormat
    /// The most tokens a sample may have.
    public var maxLength: Int
    /// The most images a sample may have.
    public var maxImages: Int
    let endOfTextID: Int

    /// - Throws: ``DataError`` when the processor's tokenizer lacks `<|end_of_text|>` or a chat-format token.
    /// Encode every record as if it had no images (for a text-only model: the no-vision baseline).
    public var ignoresImages = false
    /// Text positions per image: each `<|image|>` is repeated this many times (1 for
    /// cross-attention; a token-stream model's image tokens per image). The repeats are not learned
    /// and count towards `maxLength`.
    public var imageTokensPerImage = 1
    /// LLaVA's image processor: when set, a sample's images become CLIP pixel values `[n, 3, S, S]`
    /// (``TrainingBatch`` stacks every image of the batch in token order), not Mllama tiles.
    public var clipImageProcessor: CLIPImageProcessor? = nil

    public init(processor: MllamaProcessor, maxLength: Int, maxImages: Int, ignoresImages: Bool = false) throws {
        guard let endOfText = processor.tokenizer.specialTokenID("<|end_of_text|>") else {
            throw DataError("the tokenizer has no special token <|end_of_text|>")
        }
        do { chatFormat = try Llama3ChatFormat(tokenizer: processor.tokenizer) } catch {
            throw DataError("\(error)")
        }
        self.processor = processor
        self.maxLength = maxLength
        self.maxImages = maxImages
        self.ignoresImages = ignoresImages
        endOfTextID = endOfText
    }

    /// Encodes a record.
    ///
    /// - Throws: ``DataIssue`` for a sample to skip (too long, too many images, empty text, a
    ///   conversation the chat format refuses); ``DataError`` for a preference record, which
    ///   pretraining and SFT cannot train on.
    public func encode(_ record: DatasetRecord) throws -> EncodedSample {
        var record = record
        if ignoresImages { record = record.withoutImages }
        guard record.images.count <= maxImages else {
            throw DataIssue(.tooManyImages, at: record.location, "\(record.images.count) images, more than the \(maxImages) allowed per sample")
        }
        var (ids, labels): ([Int], [Int])
        switch record.content {
        case .caption(let caption):
            (ids, labels) = try captionIDs(caption, imageCount: record.images.count, location: record.location)
        case .conversation(let messages):
            (ids, labels) = try conversationIDs(messages, location: record.location)
        case .question(let prompt, let answer, _):
            let user = ChatMessage(role: .user, parts: Array(repeating: .image, count: record.images.count) + [.text(prompt)])
            (ids, labels) = try conversationIDs([user, ChatMessage(role: .assistant, text: answer)], location: record.location)
        case .preference:
            throw DataError("\(record.location): a preference record (prompt/chosen/rejected) cannot be used for pretraining or SFT")
        }
        let imageTokens = ids.lazy.filter { $0 == processor.imageTokenID }.count
        guard imageTokens == record.images.count else {
            throw DataIssue(.malformedRecord, at: record.location,
                            "\(imageTokens) image place\(imageTokens == 1 ? "" : "s") in the text but \(record.images.count) image\(record.images.count == 1 ? "" : "s")")
        }
        if imageTokensPerImage > 1 && imageTokens > 0 {
            labels = zip(ids, labels).flatMap { id, label in
                id == processor.imageTokenID ? Array(repeating: Self.ignoreIndex, count: imageTokensPerImage) : [label]
            }
            ids = expandImageTokens(ids, imageTokenID: processor.imageTokenID, count: imageTokensPerImage)
        }
        guard ids.count <= maxLength else {
            throw DataIssue(.overLength, at: record.location, "\(ids.count) tokens, more than the maximum length \(maxLength)")
        }
        return EncodedSample(id: record.id, location: record.location, tokenIDs: ids, labels: labels, images: record.images)
    }

    /// The pretraining layout: prompt ids (through the processor, which decides `<|begin_of_text|>`),
    /// caption tokens, `<|end_of_text|>`. Special-token text inside a caption is encoded as plain text.
    func captionIDs(_ caption: String, imageCount: Int, location: RecordLocation) throws -> ([Int], [Int]) {
        guard !caption.allSatisfy(\.isWhitespace) else { throw DataIssue(.emptyText, at: location, "empty caption") }
        let prompt = processor.tokenIDs(for: String(repeating: processor.imageToken, count: imageCount))
        let learned = processor.tokenizer.encode(caption, allowSpecial: false) + [endOfTextID]
        return (prompt + learned, Array(repeating: Self.ignoreIndex, count: prompt.count) + learned)
    }

    func conversationIDs(_ messages: [ChatMessage], location: RecordLocation) throws -> ([Int], [Int]) {
        let encoding: ChatEncoding
        do { encoding = try chatFormat.encode(messages) } catch {
            throw DataIssue(.malformedRecord, at: location, "\(error)")
        }
        let labels = zip(encoding.ids, encoding.assistantMask).map { $1 ? $0 : Self.ignoreIndex }
        guard labels.contains(where: { $0 != Self.ignoreIndex }) else {
            throw DataIssue(.emptyText, at: location, "no assistant tokens to learn")
        }
        return (encoding.ids, labels)
    }
}
