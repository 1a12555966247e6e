import Models
import Tokenization

/// A record cut before its answer, ready for greedy generation and an exact-match comparison.
public struct EvaluationPrompt: @unchecked Sendable {
    public var id: String
    public var location: RecordLocation
    /// One sample: the prompt's ids (ending where the answer starts) and its processed images.
    public var inputs: ModelInputs
    /// The reference answer.
    public var answer: String
    /// The question's category (`"color"`), when the record has one.
    public var kind: String?
}

extension SampleEncoder {
    /// The prompt a model answers for `record`, laid out as in training so the answer is what
    /// training taught it to produce next:
    ///
    /// - a question: the one-turn conversation's user turn and an open assistant header; the answer;
    /// - a conversation: every message before the last assistant message, and an open assistant
    ///   header; that message's text;
    /// - a caption: the pretraining prompt (the processor's ids for the `<|image|>` tokens); the caption.
    ///
    /// - Parameter blankImages: Replace the images by black ones of the same size.
    /// - Throws: ``DataIssue`` for an image that is missing or does not decode, or a conversation the
    ///   chat format refuses; ``DataError`` for a preference record or a conversation that does not
    ///   end with an assistant message.
    public func evaluationPrompt(for record: DatasetRecord, blankImages: Bool = false) throws -> EvaluationPrompt {
        let ids: [Int], answer: String, kind: String?
        switch record.content {
        case .caption(let caption):
            ids = processor.tokenIDs(for: String(repeating: processor.imageToken, count: record.images.count))
            (answer, kind) = (caption, nil)
        case .question(let prompt, let reference, let category):
            let user = ChatMessage(role: .user, parts: Array(repeating: .image, count: record.images.count) + [.text(prompt)])
            ids = try promptIDs([user], location: record.location)
            (answer, kind) = (reference, category)
        case .conversation(let messages):
            guard let last = messages.last, last.role == .assistant else {
                throw DataError("\(record.location): the conversation does not end with an assistant message to compare against")
            }
            ids = try promptIDs(Array(messages.dropLast()), location: record.location)
            answer = last.parts.map { if case .text(let text) = $0 { text } else { "" } }.joined()
            kind = nil
        case .preference:
            throw DataError("\(record.location): a preference record has no single reference answer")
        }
        let sample = EncodedSample(id: record.id, location: record.location, tokenIDs: ids,
                                   labels: Array(repeating: Self.ignoreIndex, count: ids.count), images: record.images)
        let batch = BatchCollation.collate([try BatchCollation.prepare(sample, processor: processor, blankImages: blankImages)],
                                           processor: processor)
        return EvaluationPrompt(id: record.id, location: record.location, inputs: batch.inputs, answer: answer, kind: kind)
    }

    private func promptIDs(_ messages: [ChatMessage], location: RecordLocation) throws -> [Int] {
        do { return try chatFormat.encode(messages, addGenerationPrompt: true).ids } catch {
            throw DataIssue(.malformedRecord, at: location, "\(error)")
        }
    }
}
