/// Why inputs could not be turned into model inputs, naming the sample, image or setting at fault.
///
/// `description` reads as one sentence, e.g. `sample 1: the prompt has 2 <|image|> tokens but 3
/// images were given`.
public struct ProcessingError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What is wrong, in words, starting with what it is about.
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
