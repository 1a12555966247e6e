import Foundation

/// The special tokens a tokenizer puts around one text when asked to add them — transformers'
/// `add_special_tokens=True`, which is its default for `tokenizer(text)` and for the processors.
///
/// Read from the files exactly where transformers reads it: the `post_processor` of
/// `tokenizer.json` (a `TemplateProcessing`'s `single` template, possibly inside a `Sequence`;
/// `ByteLevel` and null add nothing), unless `tokenizer_config.json` makes the tokenizer rebuild it
/// from `add_bos_token` / `add_eos_token` (see ``Tokenizer/configured(with:)``).
///
/// Llama 3.1 and 3.2's `tokenizer.json` prepend `<|begin_of_text|>`: `prefix == [128000]`. The
/// Llama 3.0 file in `../shared` has a `ByteLevel` post-processor only, so nothing is added.
public struct SpecialTokenTemplate: Sendable, Equatable, CustomStringConvertible {
    /// Ids put before the text.
    public var prefix: [Int]
    /// Ids put after the text.
    public var suffix: [Int]

    public init(prefix: [Int] = [], suffix: [Int] = []) {
        self.prefix = prefix
        self.suffix = suffix
    }

    /// Adds nothing.
    public static let empty = SpecialTokenTemplate()

    /// `prefix + ids + suffix`.
    public func apply(to ids: [Int]) -> [Int] { prefix + ids + suffix }

    public var description: String {
        (prefix.map(String.init) + ["$A"] + suffix.map(String.init)).joined(separator: " ")
    }

    /// The template of a `post_processor` value of `tokenizer.json`.
    ///
    /// `TemplateProcessing`'s `single` is a list of `{"SpecialToken": {"id": NAME}}` and exactly one
    /// `{"Sequence": {"id": "A"}}`; each NAME's ids come from its `special_tokens[NAME].ids`. A
    /// `Sequence` applies its processors in order, so a later template wraps an earlier one.
    /// Processors that only touch offsets (`ByteLevel`) add nothing; others are refused.
    static func parse(postProcessor value: Any?, failure: (String) -> TokenizerFileError) throws -> SpecialTokenTemplate {
        guard let value, !(value is NSNull) else { return .empty }
        guard let processor = value as? [String: Any], let type = processor["type"] as? String else {
            throw failure("post_processor is not an object with a \"type\"")
        }
        switch type {
        case "ByteLevel":
            return .empty
        case "Sequence":
            guard let steps = processor["processors"] as? [Any] else {
                throw failure("post_processor (Sequence) has no \"processors\" list")
            }
            var result = SpecialTokenTemplate.empty
            for step in steps {
                let inner = try parse(postProcessor: step, failure: failure)
                result = SpecialTokenTemplate(prefix: inner.prefix + result.prefix, suffix: result.suffix + inner.suffix)
            }
            return result
        case "TemplateProcessing":
            return try parseTemplateProcessing(processor, failure: failure)
        default:
            throw failure("post_processor type \"\(type)\" is not supported (only TemplateProcessing, ByteLevel and Sequence)")
        }
    }

    private static func parseTemplateProcessing(_ processor: [String: Any],
                                                failure: (String) -> TokenizerFileError) throws -> SpecialTokenTemplate {
        guard let single = processor["single"] as? [Any] else {
            throw failure("post_processor (TemplateProcessing) has no \"single\" template")
        }
        let specials = processor["special_tokens"] as? [String: Any] ?? [:]
        var result = SpecialTokenTemplate.empty
        var sawSequence = false
        for (index, piece) in single.enumerated() {
            guard let piece = piece as? [String: Any] else {
                throw failure("post_processor.single[\(index)] is not an object")
            }
            if let sequence = piece["Sequence"] as? [String: Any] {
                guard (sequence["id"] as? String) == "A", !sawSequence else {
                    throw failure("post_processor.single must hold the sequence $A exactly once")
                }
                sawSequence = true
            } else if let special = piece["SpecialToken"] as? [String: Any], let name = special["id"] as? String {
                guard let entry = specials[name] as? [String: Any],
                      let ids = (entry["ids"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }), !ids.isEmpty
                else {
                    throw failure("post_processor.special_tokens has no ids for \(name), which post_processor.single uses")
                }
                if sawSequence { result.suffix += ids } else { result.prefix += ids }
            } else {
                throw failure("post_processor.single[\(index)] is neither a SpecialToken nor a Sequence")
            }
        }
        guard sawSequence else { throw failure("post_processor.single must hold the sequence $A exactly once") }
        return result
    }
}
