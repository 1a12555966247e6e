/// A command that could not do its work because of its inputs' contents (a file, a tensor, a
/// model), as opposed to a malformed command line: ArgumentParser prints it as `Error: …` without
/// the usage text that a `ValidationError` brings.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
