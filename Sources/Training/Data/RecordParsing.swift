import Foundation
import Tokenization

// One parser per JSON-based format: a JSON object in, a record out, or a DataIssue naming the field.

/// Turns a dataset file's relative image paths into URLs.
struct ImagePaths {
    /// The directory relative paths are resolved against (the dataset file's, unless overridden).
    let root: URL

    func source(_ path: String) -> ImageSource {
        .file(path.hasPrefix("/") ? URL(fileURLWithPath: path) : root.appendingPathComponent(path))
    }
}

enum RecordParsing {
    /// `{"image": "a.png", "text": "…", "id": optional}`.
    static func pair(_ fields: JSONFields, defaultID: String, paths: ImagePaths) throws(DataIssue) -> DatasetRecord {
        let image = try fields.optionalString("image")
        let text = try fields.string("text")
        return DatasetRecord(id: fields.id ?? defaultID, location: fields.location, images: image.map { [paths.source($0)] } ?? [],
                             content: .caption(text))
    }

    /// `{"image": "a.png", "question": "…", "answer": "…", "type": optional}`.
    static func question(_ fields: JSONFields, defaultID: String, paths: ImagePaths) throws(DataIssue) -> DatasetRecord {
        let images = try fields.strings("image") + fields.strings("images")
        guard !images.isEmpty else { throw fields.missing("image") }
        let question = try fields.string("question")
        let answer = try fields.string("answer")
        return DatasetRecord(id: fields.id ?? defaultID, location: fields.location, images: images.map(paths.source),
                             content: .question(prompt: question, answer: answer, kind: try fields.optionalString("type")))
    }

    /// LLaVA: `{"id", "image": "x.jpg" or a list, "conversations": [{"from": "human", "value": "<image>\n…"}, …]}`.
    ///
    /// `<image>` marks an image's place; whitespace between a marker and the text beside it is
    /// dropped (LLaVA moves the marker to its own line). When no turn has a marker but the record has
    /// images, they go before the first human turn's text, as LLaVA's training code places them.
    static func llava(_ fields: JSONFields, defaultID: String, paths: ImagePaths) throws(DataIssue) -> DatasetRecord {
        let images = try fields.strings("image")
        let turns = try fields.list("conversations")
        var messages: [ChatMessage] = []
        for (index, turn) in turns.enumerated() {
            let field = "conversations[\(index)]"
            let turnFields = try JSONFields(turn, at: fields.location, field: field)
            let speaker = try turnFields.string("from")
            let role: ChatMessage.Role
            switch speaker.lowercased() {
            case "human", "user": role = .user
            case "gpt", "assistant": role = .assistant
            case "system": role = .system
            default:
                throw DataIssue(.malformedRecord, at: fields.location, field: "\(field).from",
                                "unknown speaker \"\(speaker)\" (expected human, gpt or system)")
            }
            let value: String
            do throws(DataIssue) { value = try turnFields.string("value", allowEmpty: role != .assistant) } catch {
                throw DataIssue(error.cause, at: fields.location, field: "\(field).value", error.message)
            }
            messages.append(ChatMessage(role: role, parts: partsSplittingImageMarkers(value)))
        }
        if images.count > 0, !messages.contains(where: { $0.parts.contains(.image) }),
           let first = messages.firstIndex(where: { $0.role == .user }) {
            messages[first].parts.insert(contentsOf: Array(repeating: .image, count: images.count), at: 0)
        }
        try validate(messages, imageCount: images.count, fields: fields, field: "conversations", imageField: "image")
        return DatasetRecord(id: fields.id ?? defaultID, location: fields.location, images: images.map(paths.source),
                             content: .conversation(messages))
    }

    /// TRL / Hugging Face: `{"images": […], "messages": [{"role", "content": [{"type": "image"}, {"type": "text", "text"}] or "…"}]}`.
    static func messages(_ fields: JSONFields, defaultID: String, paths: ImagePaths) throws(DataIssue) -> DatasetRecord {
        let images = try fields.strings("images") + fields.strings("image")
        let messages = try chatMessages(fields.object["messages"], fields: fields, field: "messages", defaultRole: nil)
        try validate(messages, imageCount: images.count, fields: fields, field: "messages", imageField: "images")
        return DatasetRecord(id: fields.id ?? defaultID, location: fields.location, images: images.map(paths.source),
                             content: .conversation(messages))
    }

    /// TRL preference: `{"images", "prompt": [messages] or "…", "chosen": …, "rejected": …, "edited": optional}`.
    /// A prompt given as a string is one user message, with the images before its text.
    static func preference(_ fields: JSONFields, defaultID: String, paths: ImagePaths) throws(DataIssue) -> DatasetRecord {
        let images = try fields.strings("images") + fields.strings("image")
        var prompt = try chatMessages(fields.object["prompt"], fields: fields, field: "prompt", defaultRole: .user)
        if fields.object["prompt"] is String, !images.isEmpty {
            prompt[0].parts.insert(contentsOf: Array(repeating: .image, count: images.count), at: 0)
        }
        let imageParts = prompt.reduce(0) { $0 + $1.parts.filter { $0 == .image }.count }
        guard imageParts == images.count else {
            throw DataIssue(.malformedRecord, at: fields.location, field: "prompt",
                            "\(imageParts) image part\(imageParts == 1 ? "" : "s") but \(images.count) image\(images.count == 1 ? "" : "s") in \"images\"")
        }
        func completion(_ key: String) throws(DataIssue) -> [ChatMessage] {
            let messages = try chatMessages(fields.object[key], fields: fields, field: key, defaultRole: .assistant)
            guard messages.contains(where: { $0.role == .assistant && hasText($0) }) else {
                throw DataIssue(.emptyText, at: fields.location, field: key, "no assistant text")
            }
            if messages.contains(where: { $0.parts.contains(.image) }) {
                throw DataIssue(.malformedRecord, at: fields.location, field: key, "a completion cannot contain images")
            }
            return messages
        }
        let chosen = try completion("chosen"), rejected = try completion("rejected")
        let edited = fields.has("edited") ? try completion("edited") : nil
        return DatasetRecord(id: fields.id ?? defaultID, location: fields.location, images: images.map(paths.source),
                             content: .preference(prompt: prompt, chosen: chosen, rejected: rejected, edited: edited))
    }

    // MARK: - Pieces

    /// Messages from a list of `{"role", "content"}` objects, or from a plain string (one message of
    /// `defaultRole`, when given).
    static func chatMessages(_ value: Any?, fields: JSONFields, field: String,
                             defaultRole: ChatMessage.Role?) throws(DataIssue) -> [ChatMessage] {
        guard let value, !(value is NSNull) else { throw fields.missing(field) }
        if let text = value as? String, let defaultRole {
            guard !text.allSatisfy(\.isWhitespace) else { throw DataIssue(.emptyText, at: fields.location, field: field, "empty text") }
            return [ChatMessage(role: defaultRole, text: text)]
        }
        guard let list = value as? [Any] else {
            throw fields.wrongType(field, expected: defaultRole == nil ? "a list of messages" : "a list of messages or a string", found: value)
        }
        guard !list.isEmpty else { throw DataIssue(.malformedRecord, at: fields.location, field: field, "no messages") }
        var messages: [ChatMessage] = []
        for (index, element) in list.enumerated() {
            let name = "\(field)[\(index)]"
            let message = try JSONFields(element, at: fields.location, field: name)
            let roleName = try message.string("role")
            guard let role = ChatMessage.Role(rawValue: roleName) else {
                throw DataIssue(.malformedRecord, at: fields.location, field: "\(name).role",
                                "unknown role \"\(roleName)\" (expected system, user or assistant)")
            }
            messages.append(ChatMessage(role: role, parts: try parts(message.object["content"], fields: fields, field: "\(name).content")))
        }
        return messages
    }

    /// Message content: a string, or a list of `{"type": "text", "text"}` / `{"type": "image"}` parts.
    static func parts(_ value: Any?, fields: JSONFields, field: String) throws(DataIssue) -> [ChatMessage.Part] {
        guard let value, !(value is NSNull) else { throw fields.missing(field) }
        if let text = value as? String { return [.text(text)] }
        guard let list = value as? [Any] else { throw fields.wrongType(field, expected: "a string or a list of parts", found: value) }
        var parts: [ChatMessage.Part] = []
        for (index, element) in list.enumerated() {
            let name = "\(field)[\(index)]"
            let part = try JSONFields(element, at: fields.location, field: name)
            let type = try part.string("type")
            switch type {
            case "image", "image_url": parts.append(.image)
            case "text":
                guard let text = part.object["text"] as? String else {
                    throw DataIssue(.malformedRecord, at: fields.location, field: "\(name).text", "missing or not a string")
                }
                parts.append(.text(text))
            default:
                throw DataIssue(.malformedRecord, at: fields.location, field: "\(name).type",
                                "unknown part type \"\(type)\" (expected text or image)")
            }
        }
        return parts
    }

    /// `"<image>\nWhat is it?"` → `[.image, .text("What is it?")]`.
    static func partsSplittingImageMarkers(_ value: String, marker: String = "<image>") -> [ChatMessage.Part] {
        let pieces = value.components(separatedBy: marker)
        var parts: [ChatMessage.Part] = []
        for (index, piece) in pieces.enumerated() {
            if index > 0 { parts.append(.image) }
            var text = Substring(piece)
            if index > 0 { text = text.drop(while: \.isWhitespace) }
            if index < pieces.count - 1 { while text.last?.isWhitespace == true { text = text.dropLast() } }
            if !text.isEmpty || pieces.count == 1 { parts.append(.text(String(text))) }
        }
        return parts
    }

    static func hasText(_ message: ChatMessage) -> Bool {
        message.parts.contains { if case .text(let text) = $0 { !text.allSatisfy(\.isWhitespace) } else { false } }
    }

    /// A conversation must have as many image parts as images, a system message only first, and an
    /// assistant message with text (else there is nothing to learn).
    static func validate(_ messages: [ChatMessage], imageCount: Int, fields: JSONFields, field: String,
                         imageField: String) throws(DataIssue) {
        guard !messages.isEmpty else { throw DataIssue(.malformedRecord, at: fields.location, field: field, "no messages") }
        let imageParts = messages.reduce(0) { $0 + $1.parts.filter { $0 == .image }.count }
        guard imageParts == imageCount else {
            throw DataIssue(.malformedRecord, at: fields.location, field: field,
                            "\(imageParts) image place\(imageParts == 1 ? "" : "s") but \(imageCount) image\(imageCount == 1 ? "" : "s") in \"\(imageField)\"")
        }
        if let index = messages.indices.dropFirst().first(where: { messages[$0].role == .system }) {
            throw DataIssue(.malformedRecord, at: fields.location, field: "\(field)[\(index)]", "a system message may only come first")
        }
        for (index, message) in messages.enumerated() where message.role == .assistant && !hasText(message) {
            throw DataIssue(.emptyText, at: fields.location, field: "\(field)[\(index)]", "an assistant message with no text")
        }
        guard messages.contains(where: { $0.role == .assistant }) else {
            throw DataIssue(.emptyText, at: fields.location, field: field, "no assistant message (nothing to learn)")
        }
    }
}
