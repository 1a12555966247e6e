import Foundation
import Testing
import Tokenization
@testable import Training

@Suite struct DataEvaluationPromptTests {
    /// The prompt is the training sample's ids up to where the learned answer starts.
    @Test func aQuestionsPromptStopsWhereItsLearnedAnswerStarts() throws {
        let directory = try TemporaryDirectory()
        try directory.writePNG("a.png", color: [250, 10, 10])
        let record = DatasetRecord(id: "q", location: RecordLocation(file: "qa.jsonl", line: 1),
                                   images: [.file(directory.url.appendingPathComponent("a.png"))],
                                   content: .question(prompt: "What colour?", answer: "red", kind: "color"))
        let encoder = try DataTestSupport.encoder()
        let prompt = try encoder.evaluationPrompt(for: record)
        let training = try encoder.encode(record)
        let firstLearned = try #require(training.labels.firstIndex { $0 != SampleEncoder.ignoreIndex })
        #expect(prompt.inputs.inputIDs.integers() == Array(training.tokenIDs[..<firstLearned]))
        #expect(prompt.answer == "red" && prompt.kind == "color")
        #expect(prompt.inputs.pixelValues?.shape.prefix(2) == [1, 1])

        let blank = try encoder.evaluationPrompt(for: record, blankImages: true)
        #expect(blank.inputs.inputIDs.integers() == prompt.inputs.inputIDs.integers())
        #expect(blank.inputs.pixelValues?.floats().allSatisfy { $0 == -1 || $0 == 0 } == true)
        #expect(prompt.inputs.pixelValues?.floats() != blank.inputs.pixelValues?.floats())
    }

    @Test func aConversationIsAnsweredByItsLastAssistantMessage() throws {
        let encoder = try DataTestSupport.encoder()
        let messages = [ChatMessage(role: .user, text: "Hi"), ChatMessage(role: .assistant, text: "Hello."),
                        ChatMessage(role: .user, text: "Name?"), ChatMessage(role: .assistant, text: "Llama.")]
        let record = DatasetRecord(id: "c", location: RecordLocation(file: "c.jsonl", line: 2), images: [], content: .conversation(messages))
        let prompt = try encoder.evaluationPrompt(for: record)
        #expect(prompt.answer == "Llama.")
        #expect(prompt.inputs.inputIDs.integers() == (try encoder.chatFormat.encode(Array(messages.prefix(3)), addGenerationPrompt: true)).ids)
        let missing = DatasetRecord(id: "m", location: RecordLocation(file: "c.jsonl", line: 3),
                                    images: [.file(URL(fileURLWithPath: "/nonexistent/x.png"))], content: .caption("x"))
        #expect { try encoder.evaluationPrompt(for: missing) } throws: { ($0 as? DataIssue)?.cause == .missingImage }
    }
}
