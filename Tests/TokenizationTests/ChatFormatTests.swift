import Foundation
import Testing
import _TestSupport
@testable import Tokenization

/// `Tests/Fixtures/tokenizer/chat.json`: conversations, and the ids the Llama 3.2 Vision chat template
/// gives them through transformers' `apply_chat_template` (date_string "26 Jul 2024").
private struct ChatFixture {
    let name: String
    let messages: [ChatMessage]
    let addGenerationPrompt: Bool
    let ids: [Int]

    static func load() throws -> [ChatFixture] {
        let data = try Data(contentsOf: Fixtures.url("tokenizer/chat.json"))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let conversations = try #require(root["conversations"] as? [[String: Any]])
        return try conversations.map { conversation in
            let messages = try #require(conversation["messages"] as? [[String: Any]]).map { message in
                let role = try #require(ChatMessage.Role(rawValue: message["role"] as? String ?? ""))
                if let text = message["content"] as? String { return ChatMessage(role: role, text: text) }
                let parts = try #require(message["content"] as? [[String: Any]]).map { part -> ChatMessage.Part in
                    part["type"] as? String == "image" ? .image : .text(part["text"] as? String ?? "")
                }
                return ChatMessage(role: role, parts: parts)
            }
            return ChatFixture(name: try #require(conversation["name"] as? String), messages: messages,
                               addGenerationPrompt: try #require(conversation["add_generation_prompt"] as? Bool),
                               ids: try #require(conversation["ids"] as? [Int]))
        }
    }
}

/// The contiguous runs of supervised tokens, decoded.
private func supervisedRuns(_ encoding: ChatEncoding, _ tokenizer: Tokenizer) -> [String] {
    var runs: [String] = []
    var current: [Int] = []
    for (id, supervised) in zip(encoding.ids, encoding.assistantMask) {
        if supervised {
            current.append(id)
        } else if !current.isEmpty {
            runs.append(tokenizer.decode(current))
            current = []
        }
    }
    if !current.isEmpty { runs.append(tokenizer.decode(current)) }
    return runs
}

@Test("Chat ids equal the Llama 3.2 Vision template's for every fixture conversation", .needsSharedTokenizer)
func chatTemplateParity() throws {
    let format = try Llama3ChatFormat(tokenizer: ReferenceTokenizers.fromModel)
    for fixture in try ChatFixture.load() {
        let encoding = try format.encode(fixture.messages, addGenerationPrompt: fixture.addGenerationPrompt)
        #expect(encoding.ids == fixture.ids, "\(fixture.name)")
        #expect(encoding.assistantMask.count == encoding.ids.count)
    }
}

@Test("The assistant mask covers exactly each assistant message's content and its <|eot_id|>", .needsSharedTokenizer)
func assistantMaskCoversAssistantTurns() throws {
    let tokenizer = ReferenceTokenizers.fromModel
    let format = try Llama3ChatFormat(tokenizer: tokenizer)
    for fixture in try ChatFixture.load() {
        let encoding = try format.encode(fixture.messages, addGenerationPrompt: fixture.addGenerationPrompt)
        let expected = fixture.messages.filter { $0.role == .assistant }.map { message in
            message.parts.map { part -> String in
                if case .text(let text) = part { return text }
                return ""
            }.joined() + "<|eot_id|>"
        }
        let runs = supervisedRuns(encoding, tokenizer)
        #expect(runs.count == expected.count, "\(fixture.name)")
        for (run, content) in zip(runs, expected) {
            // Content that starts with a newline shares its first token with the header's "\n\n".
            let straddles = content.first?.isNewline == true && run == "\n\n" + content
            #expect(run == content || straddles, "\(fixture.name): \(run.debugDescription)")
        }
    }
}

@Test("A worked example: only the assistant's answer and its <|eot_id|> are supervised", .needsSharedTokenizer)
func workedMaskExample() throws {
    let tokenizer = ReferenceTokenizers.fromModel
    let format = try Llama3ChatFormat(tokenizer: tokenizer)
    let encoding = try format.encode([
        ChatMessage(role: .user, parts: [.image, .text("Hi")]),
        ChatMessage(role: .assistant, text: "Yes"),
    ])
    // <|begin_of_text|> <|start_header_id|> user <|end_header_id|> \n\n <|image|> Hi <|eot_id|>
    // <|start_header_id|> assistant <|end_header_id|> \n\n | Yes <|eot_id|>
    let hi = tokenizer.encode("Hi"), yes = tokenizer.encode("Yes")
    #expect(hi.count == 1 && yes.count == 1)
    #expect(encoding.ids == [128_000, 128_006, 882, 128_007, 271, 128_256] + hi
        + [128_009, 128_006, 78191, 128_007, 271] + yes + [128_009])
    #expect(encoding.assistantMask == [Bool](repeating: false, count: 12) + [true, true])
}

@Test("A system message next to an image is refused, as the template refuses it", .needsSharedTokenizer)
func systemMessageWithImageIsRefused() throws {
    let format = try Llama3ChatFormat(tokenizer: ReferenceTokenizers.fromModel)
    #expect(throws: ChatFormatError.systemMessageWithImages) {
        try format.encode([ChatMessage(role: .system, text: "Be brief."),
                           ChatMessage(role: .user, parts: [.image, .text("What is it?")])])
    }
}

@Test("The system message is trimmed as Jinja's trim does")
func systemMessageTrimming() {
    #expect(Llama3ChatFormat.trimmed(" \u{1C}\t\u{3000}hi there\n\u{85}") == "hi there")
    #expect(Llama3ChatFormat.trimmed(" \n ") == "")
}

@Test("A text tokenizer (no <|image|>) makes text chats, and refuses only a conversation with an image",
      .enabled(if: Fixtures.hasSharedReference("llama3-tokenizer/tokenizer.model"),
               Comment(rawValue: Fixtures.sharedReferenceNote("llama3-tokenizer/tokenizer.model"))))
func chatFormatWithoutImageToken() throws {
    let tokenizer = try Tokenizer(contentsOf: Fixtures.sharedReference("llama3-tokenizer/tokenizer.model"))
    let format = try Llama3ChatFormat(tokenizer: tokenizer)
    let ids = try format.encode([ChatMessage(role: .user, text: "Hello")], addGenerationPrompt: true).ids
    #expect(ids.first == 128_000 && ids.last.map { tokenizer.decode([$0]) } == "\n\n")
    #expect(tokenizer.decode(ids).hasSuffix("<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"))
    #expect(throws: ChatFormatError.missingSpecialToken("<|image|>")) {
        try format.encode([ChatMessage(role: .user, parts: [.image, .text("What is this?")])])
    }
}
