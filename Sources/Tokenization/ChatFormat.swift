/// One message of a conversation.
public struct ChatMessage: Sendable, Equatable {
    /// Who speaks.
    public enum Role: String, Sendable, Equatable {
        case system, user, assistant
    }

    /// A piece of a message: text, or the place of an image.
    public enum Part: Sendable, Equatable {
        case text(String)
        case image
    }

    public var role: Role
    public var parts: [Part]

    public init(role: Role, parts: [Part]) {
        self.role = role
        self.parts = parts
    }

    /// A message of text only.
    public init(role: Role, text: String) {
        self.init(role: role, parts: [.text(text)])
    }
}

/// Token ids of a conversation and which of them training supervises.
public struct ChatEncoding: Sendable, Equatable {
    /// The input ids, starting with `<|begin_of_text|>`.
    public var ids: [Int]
    /// `assistantMask[i]` is true when `ids[i]` is part of an assistant message's content or the
    /// `<|eot_id|>` that ends it: the tokens a fine-tuning loss is computed on.
    public var assistantMask: [Bool]
}

/// The chat format cannot encode the conversation.
public enum ChatFormatError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The tokenizer lacks a special token the format needs.
    case missingSpecialToken(String)
    /// A system message together with an image (the Llama 3.2 Vision template forbids it).
    case systemMessageWithImages
    /// A system message that contains an image.
    case imageInSystemMessage

    public var description: String {
        switch self {
        case .missingSpecialToken(let token): "the tokenizer has no special token \(token)"
        case .systemMessageWithImages: "prompting with images is incompatible with system messages"
        case .imageInSystemMessage: "a system message cannot contain an image"
        }
    }
}

/// The Llama 3 / Llama 3.2 Vision chat format, as the Instruct checkpoints' chat template renders it:
///
///     <|begin_of_text|>[system block]
///     <|start_header_id|>user<|end_header_id|>\n\n<|image|>What is this?<|eot_id|>
///     <|start_header_id|>assistant<|end_header_id|>\n\nA cat.<|eot_id|>
///
/// (one line per message here; nothing separates them in the ids). Message parts keep their order,
/// so `[.image, .text("What is this?")]` puts `<|image|>` before the text, as the template and Meta's
/// `chat_format.py` do. When there is no image, a system block always comes first:
/// `<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date:
/// 26 Jul 2024\n\n` + the system message (leading and trailing whitespace trimmed) + `<|eot_id|>`.
/// With an image, there is no system block and a system message is an error.
///
/// Text between special tokens is tokenized as one string, exactly as the template's output is, so
/// ids match `apply_chat_template`. Special-token text inside messages is recognised as such, also as
/// the template does; strip it from untrusted text first.
public struct Llama3ChatFormat: Sendable {
    public let tokenizer: Tokenizer
    /// The "Today Date" of the system block (the template's `date_string`).
    public var dateString: String

    private let beginOfText, startHeader, endHeader, endOfTurn: Int
    /// `<|image|>`'s id: only vision tokenizers have it, and only conversations with images need it.
    private let image: Int?

    /// - Throws: `ChatFormatError.missingSpecialToken` when the tokenizer lacks one of
    ///   `<|begin_of_text|>`, `<|start_header_id|>`, `<|end_header_id|>`, `<|eot_id|>` (a missing
    ///   `<|image|>` is an error only when a conversation holds an image).
    public init(tokenizer: Tokenizer, dateString: String = "26 Jul 2024") throws {
        func id(_ text: String) throws -> Int {
            guard let id = tokenizer.specialTokenID(text) else { throw ChatFormatError.missingSpecialToken(text) }
            return id
        }
        self.tokenizer = tokenizer
        self.dateString = dateString
        beginOfText = try id("<|begin_of_text|>")
        startHeader = try id("<|start_header_id|>")
        endHeader = try id("<|end_header_id|>")
        endOfTurn = try id("<|eot_id|>")
        image = tokenizer.specialTokenID("<|image|>")
    }

    /// Encodes a conversation.
    ///
    /// - Parameters:
    ///   - messages: The conversation; a system message may only come first.
    ///   - addGenerationPrompt: End with an open assistant header for the model to continue.
    /// - Returns: Ids and the assistant mask. Headers, the system block, user turns and images are
    ///   not supervised; a token that straddles the `\n\n` after a header and the start of assistant
    ///   content (content starting with a newline) counts as content.
    /// - Throws: `ChatFormatError` for a system message alongside images, or an image when the
    ///   tokenizer has no `<|image|>`.
    public func encode(_ messages: [ChatMessage], addGenerationPrompt: Bool = false) throws -> ChatEncoding {
        var builder = Builder(tokenizer: tokenizer)
        builder.special(beginOfText, supervised: false)

        var messages = messages[...]
        var systemMessage = ""
        if let first = messages.first, first.role == .system {
            for part in first.parts {
                switch part {
                case .text(let text): systemMessage += text
                case .image: throw ChatFormatError.imageInSystemMessage
                }
            }
            systemMessage = Self.trimmed(systemMessage)
            messages = messages.dropFirst()
        }
        let hasImages = messages.contains { $0.parts.contains(.image) }
        if hasImages && image == nil { throw ChatFormatError.missingSpecialToken("<|image|>") }
        if hasImages && !systemMessage.isEmpty { throw ChatFormatError.systemMessageWithImages }
        if !hasImages {
            header("system", into: &builder)
            builder.text("Cutting Knowledge Date: December 2023\nToday Date: \(dateString)\n\n" + systemMessage,
                         supervised: false)
            builder.special(endOfTurn, supervised: false)
        }
        for message in messages {
            let supervised = message.role == .assistant
            header(message.role.rawValue, into: &builder)
            for part in message.parts {
                switch part {
                case .text(let text): builder.text(text, supervised: supervised)
                case .image: builder.special(image!, supervised: false)
                }
            }
            builder.special(endOfTurn, supervised: supervised)
        }
        if addGenerationPrompt { header("assistant", into: &builder) }
        return builder.finish()
    }

    private func header(_ role: String, into builder: inout Builder) {
        builder.special(startHeader, supervised: false)
        builder.text(role, supervised: false)
        builder.special(endHeader, supervised: false)
        builder.text("\n\n", supervised: false)
    }

    /// Jinja's `trim`: Python's `str.strip()`, whose whitespace is Unicode White_Space plus
    /// U+001C…U+001F.
    static func trimmed(_ text: String) -> String {
        func isSpace(_ scalar: Unicode.Scalar) -> Bool {
            scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
        }
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace($0) }),
              let last = scalars.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(scalars[first...last])
    }

    /// Collects text runs and special tokens; text runs between two special tokens are tokenized
    /// together, remembering which of their bytes are supervised.
    private struct Builder {
        let tokenizer: Tokenizer
        var ids: [Int] = []
        var mask: [Bool] = []
        var pendingText = ""
        /// UTF-8 byte ranges of `pendingText` that are supervised.
        var supervisedRanges: [Range<Int>] = []

        init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

        mutating func text(_ text: String, supervised: Bool) {
            let start = pendingText.utf8.count
            pendingText += text
            if supervised { supervisedRanges.append(start..<pendingText.utf8.count) }
        }

        mutating func special(_ id: Int, supervised: Bool) {
            flush()
            ids.append(id)
            mask.append(supervised)
        }

        mutating func flush() {
            guard !pendingText.isEmpty else { return }
            var offset = 0
            for id in tokenizer.encode(pendingText) {
                let end = offset + (tokenizer.bytes(ofToken: id)?.count ?? 0)
                ids.append(id)
                mask.append(supervisedRanges.contains { $0.overlaps(offset..<end) })
                offset = end
            }
            pendingText = ""
            supervisedRanges = []
        }

        mutating func finish() -> ChatEncoding {
            flush()
            return ChatEncoding(ids: ids, assistantMask: mask)
        }
    }
}
