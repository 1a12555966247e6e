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

    /// The shared folder: `$VLMKIT_SHARED` when set, otherwise `shared` beside the clone.
    public static let sharedRoot: URL = ProcessInfo.processInfo.environment["VLMKIT_SHARED"]
        .map { URL(fileURLWithPath: $0) } ?? repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared")

    /// A file under `../shared/reference/` (the Llama 3 tokenizer, reference photographs).
    public static func sharedReference(_ relativePath: String) -> URL {
        sharedRoot.appendingPathComponent("reference").appendingPathComponent(relativePath)
    }

    /// Whether `../shared/reference/<relativePath>` is present (tests that need it are skipped,
    /// with ``sharedReferenceNote(_:)`` as the reason, when it is not).
    public static func hasSharedReference(_ relativePath: String) -> Bool {
        FileManager.default.fileExists(atPath: sharedReference(relativePath).path)
    }

    /// Why a test that needs `../shared/reference/<relativePath>` was skipped: what is missing and
    /// where it comes from (see the README's "Shared reference material").
    public static func sharedReferenceNote(_ relativePath: String) -> String {
        let origin = relativePath.hasPrefix("llama3-tokenizer") ? "the Llama 3 tokenizer from Meta's Llama 3 release"
            : relativePath.hasPrefix("images") ? "photographs from scikit-image's data folder" : "shared reference material"
        return "needs ../shared/reference/\(relativePath) (\(origin)) beside the clone; see README.md"
    }
}
