import Foundation
import Media
import Processing
import Testing
import Tokenization
@testable import Training

private let location = RecordLocation(file: "test.jsonl", line: 1)

/// The learned tokens of a sample, as runs of consecutive learned positions, decoded.
private func learnedRuns(_ sample: EncodedSample) -> [String] {
    var runs: [[Int]] = [], current: [Int] = []
    for label in sample.labels {
        if label == SampleEncoder.ignoreIndex {
            if !current.isEmpty { runs.append(current); current = [] }
        } else {
            current.append(label)
        }
    }
    if !current.isEmpty { runs.append(current) }
    return runs.map { DataTestSupport.tokenizer.decode($0) }
}

@Suite struct DataEncodingTests {
    /// Pretraining: the processor's prompt for one image, then the caption's bytes and
    /// `<|end_of_text|>`; exactly the caption and the end token are learned, labels unshifted.
    @Test func pretrainingLearnsTheCaptionAndTheEndOfTextOnly() throws {
        let encoder = try DataTestSupport.encoder()
        let record = DatasetRecord(id: "r", location: location, images: [.file(URL(fileURLWithPath: "/a.png"))],
                                   content: .caption("A red square."))
        let sample = try encoder.encode(record)
        let prompt = encoder.processor.tokenIDs(for: "<|image|>")
        let learned = DataTestSupport.bytes("A red square.") + [DataTestSupport.endOfText]
        #expect(sample.tokenIDs == prompt + learned)
        #expect(sample.labels == Array(repeating: -100, count: prompt.count) + learned)
        #expect(prompt.contains(DataTestSupport.imageToken))
        #expect(learnedRuns(sample) == ["A red square.<|end_of_text|>"])
        // Special-token text in a caption is text, not a control token.
        let sneaky = try encoder.encode(DatasetRecord(id: "s", location: location, images: [.file(URL(fileURLWithPath: "/a.png"))],
                                                      content: .caption("<|eot_id|>")))
        #expect(!sneaky.tokenIDs.contains(DataTestSupport.endOfTurn))
    }

    /// SFT: the chat format's ids; learned are each assistant message's content and its `<|eot_id|>`.
    @Test func sftLearnsEachAssistantTurnAndItsEndOfTurn() throws {
        let encoder = try DataTestSupport.encoder()
        let messages = [ChatMessage(role: .user, parts: [.image, .image, .text("Which is red?")]),
                        ChatMessage(role: .assistant, text: "The first."),
                        ChatMessage(role: .user, text: "Sure?"), ChatMessage(role: .assistant, text: "Yes.")]
        let record = DatasetRecord(id: "c", location: location, images: [.file(URL(fileURLWithPath: "/a.png")), .file(URL(fileURLWithPath: "/b.png"))],
                                   content: .conversation(messages))
        let sample = try encoder.encode(record)
        #expect(sample.tokenIDs == (try encoder.chatFormat.encode(messages)).ids)
        #expect(sample.tokenIDs.filter { $0 == DataTestSupport.imageToken }.count == 2)
        #expect(learnedRuns(sample) == ["The first.<|eot_id|>", "Yes.<|eot_id|>"])
        for (id, label) in zip(sample.tokenIDs, sample.labels) where label != -100 { #expect(id == label) }
    }

    @Test func aQuestionIsAOneTurnConversationLearningTheAnswer() throws {
        let encoder = try DataTestSupport.encoder()
        let record = DatasetRecord(id: "q", location: location, images: [.file(URL(fileURLWithPath: "/a.png"))],
                                   content: .question(prompt: "What colour?", answer: "red", kind: "color"))
        let sample = try encoder.encode(record)
        let expected = try encoder.chatFormat.encode([ChatMessage(role: .user, parts: [.image, .text("What colour?")]),
                                                      ChatMessage(role: .assistant, text: "red")])
        #expect(sample.tokenIDs == expected.ids)
        #expect(learnedRuns(sample) == ["red<|eot_id|>"])
    }

    @Test func overLongAndOverImagedSamplesAreSkipsNotTruncations() throws {
        let encoder = try DataTestSupport.encoder(maxLength: 10, maxImages: 1)
        let image = ImageSource.file(URL(fileURLWithPath: "/a.png"))
        #expect { try encoder.encode(DatasetRecord(id: "l", location: location, images: [image], content: .caption("far too long a caption"))) }
            throws: { ($0 as? DataIssue)?.cause == .overLength && "\($0)".contains("test.jsonl:1") }
        #expect { try encoder.encode(DatasetRecord(id: "i", location: location, images: [image, image], content: .caption("x"))) }
            throws: { ($0 as? DataIssue)?.cause == .tooManyImages }
        #expect(throws: DataError.self) {
            try encoder.encode(DatasetRecord(id: "p", location: location, images: [], content: .preference(
                prompt: [ChatMessage(role: .user, text: "q")], chosen: [ChatMessage(role: .assistant, text: "a")],
                rejected: [ChatMessage(role: .assistant, text: "b")], edited: nil)))
        }
        let fits = try encoder.encode(DatasetRecord(id: "f", location: location, images: [image], content: .caption("ab")))
        #expect(fits.tokenIDs.count <= 10)
    }

    /// A batch of pretraining samples equals what MllamaProcessor.process gives for the same
    /// prompts (`<|image|>…caption<|end_of_text|>`) and images: ids, padding, pixel values, aspect
    /// ratio ids and mask, and the cross-attention mask, with a two-image sample beside a one-image one.
    @Test func batchesMatchTheProcessorsOwnOutput() throws {
        let encoder = try DataTestSupport.encoder()
        let wide = try pngBytes(width: 40, height: 12, color: [10, 200, 30]), small = try pngBytes(width: 9, height: 14)
        let records = [
            DatasetRecord(id: "two", location: location, images: [.embedded(name: "w", bytes: [UInt8](wide)), .embedded(name: "s", bytes: [UInt8](small))],
                          content: .caption("Both.")),
            DatasetRecord(id: "one", location: location, images: [.embedded(name: "s", bytes: [UInt8](small))],
                          content: .caption("A longer caption here.")),
        ]
        let prepared = try records.map { try BatchCollation.prepare(encoder.encode($0), processor: encoder.processor, blankImages: false) }
        let batch = BatchCollation.collate(prepared, processor: encoder.processor)
        let images = [[try decodeImage(data: wide, source: "w"), try decodeImage(data: small, source: "s")],
                      [try decodeImage(data: small, source: "s")]]
        let reference = try encoder.processor.process(
            prompts: ["<|image|><|image|>Both.<|end_of_text|>", "<|image|>A longer caption here.<|end_of_text|>"], images: images)
        #expect(batch.inputs.inputIDs.integers() == reference.inputIDs.integers())
        #expect(batch.inputs.inputIDs.shape == reference.inputIDs.shape)
        #expect(batch.inputs.attentionMask?.integers() == reference.attentionMask.integers())
        #expect(batch.inputs.crossAttentionMask?.shape == reference.crossAttentionMask?.shape)
        #expect(batch.inputs.crossAttentionMask?.integers() == reference.crossAttentionMask?.integers())
        #expect(batch.inputs.pixelValues?.shape == reference.images?.pixelValues.shape)
        #expect(batch.inputs.pixelValues?.floats() == reference.images?.pixelValues.floats())
        #expect(batch.inputs.aspectRatioIDs?.integers() == reference.images?.aspectRatioIDs.integers())
        #expect(batch.inputs.aspectRatioMask?.integers() == reference.images?.aspectRatioMask.integers())
        #expect(batch.sampleIDs == ["two", "one"])

        // Labels: padding is −100; after the shift, each row learns its caption bytes and the end token.
        let t = batch.labels.shape[1], labels = batch.labels.integers()
        let firstLength = prepared[0].sample.labels.count
        #expect(firstLength < t)
        #expect(Array(labels[..<firstLength]) == prepared[0].sample.labels)
        #expect(labels[firstLength ..< t].allSatisfy { $0 == -100 })
        #expect(batch.lossTokenCount == ("Both.".utf8.count + 1) + ("A longer caption here.".utf8.count + 1))
    }

    @Test func textOnlyBatchesCarryNoImageInputs() throws {
        let encoder = try DataTestSupport.encoder()
        let record = DatasetRecord(id: "t", location: location, images: [], content: .conversation(
            [ChatMessage(role: .user, text: "Hi"), ChatMessage(role: .assistant, text: "Hello.")]))
        let batch = BatchCollation.collate([try BatchCollation.prepare(encoder.encode(record), processor: encoder.processor, blankImages: false)],
                                           processor: encoder.processor)
        #expect(!batch.inputs.hasImages && batch.inputs.crossAttentionMask == nil)
        #expect(batch.lossTokenCount == "Hello.".utf8.count + 1)
    }
}
