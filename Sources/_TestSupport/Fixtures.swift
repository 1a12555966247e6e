import Foundation

/// Locations of test inputs: the repository's own fixtures and the shared reference material that
/// sits beside the clone (`../shared`), as CI lays it out.
public enum Fixtures {
    /// The repository root (found from this source file's path).
    public static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A file under `Tests/Fixtures/`.
    public static func url(_ relativePath: String) -> URL {
        repositoryRoot.appendingPathComponent("Tests/Fixtures").appendingPathComponent(relativePath)
    }

    /// A file under `../shared/reference/` (the Llama 3 tokenizer, reference photographs).
    public static func sharedReference(_ relativePath: String) -> URL {
        repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/reference")
            .appendingPathComponent(relativePath)
    }
}
