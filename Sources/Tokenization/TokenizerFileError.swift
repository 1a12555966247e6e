/// A tokenizer file that cannot be used, with the file and the field or line that is wrong.
///
/// ```
/// tokenizer.json: model.vocab is missing
/// tokenizer.model: line 17: bad base64 "!!"
/// ```
public struct TokenizerFileError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file (or other source label) that was being read.
    public let source: String
    /// What is wrong, naming the field or line.
    public let reason: String

    public init(source: String, reason: String) {
        self.source = source
        self.reason = reason
    }

    public var description: String { "\(source): \(reason)" }
}
