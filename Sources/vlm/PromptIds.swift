import Processing
import Tokenization

/// `prompt` with its `<|image|>` markers: as given when it has any, else `imageCount` of them first.
func markedPrompt(_ prompt: String, imageCount: Int) -> String {
    prompt.contains("<|image|>") ? prompt : String(repeating: "<|image|>", count: imageCount) + prompt
}

/// The ids of `prompt` as one user message of the Llama 3 chat format, ready for the assistant's
/// reply: what transformers' `apply_chat_template(…, add_generation_prompt=True)` gives for a
/// message whose content is `{"type": "image"}` and `{"type": "text"}` parts in the marked order.
func chatPromptIds(_ prompt: String, imageCount: Int, tokenizer: Tokenizer) throws -> [Int] {
    var parts: [ChatMessage.Part] = []
    for (index, piece) in markedPrompt(prompt, imageCount: imageCount).components(separatedBy: "<|image|>").enumerated() {
        if index > 0 { parts.append(.image) }
        if !piece.isEmpty { parts.append(.text(piece)) }
    }
    return try Llama3ChatFormat(tokenizer: tokenizer).encode([ChatMessage(role: .user, parts: parts)], addGenerationPrompt: true).ids
}

/// The ids `vlm generate` and `vlm preprocess` give an mllama model: the chat format's as they are,
/// or a plain prompt as transformers' `MllamaProcessor` tokenizes it (BOS placed after leading
/// images, then the special tokens the tokenizer files add).
func mllamaPromptIds(_ prompt: String, imageCount: Int, chat: Bool, processor: MllamaProcessor) throws -> [Int] {
    chat ? try chatPromptIds(prompt, imageCount: imageCount, tokenizer: processor.tokenizer)
        : processor.tokenIDs(for: markedPrompt(prompt, imageCount: imageCount))
}
