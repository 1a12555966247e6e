/// A problem reading or writing a checkpoint, naming the file and what is wrong with it.
///
/// `description` reads like `model.safetensors: tensor 'lm_head.weight' has data_offsets [8, 4] with begin > end`.
public struct CheckpointError: Error, CustomStringConvertible, Equatable {
    /// The file (path as given) the problem is in.
    public let file: String
    /// What is wrong, naming the tensor or field where there is one.
    public let reason: String

    public init(file: String, reason: String) {
        self.file = file
        self.reason = reason
    }

    public var description: String { "\(file): \(reason)" }
}
