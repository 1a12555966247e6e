import Foundation

/// Default inputs that live in the repository (test fixtures) or beside it (`../shared`), found
/// wherever `vlm` is run from.
enum RepositoryFiles {
    /// The path of `relativePath` (relative to the repository root, e.g. `Tests/Fixtures/media` or
    /// `../shared/reference/images`) under the first candidate root where it exists: the current
    /// folder and each folder above it, then each folder above the `vlm` executable (a build puts
    /// it inside the clone, in `.build/release/`).
    static func find(_ relativePath: String) -> String? {
        find(relativePath, startingFrom: [URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true),
                                          URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
                                              .deletingLastPathComponent()])
    }

    /// `relativePath` under the first of `folders` and their ancestors where it exists.
    static func find(_ relativePath: String, startingFrom folders: [URL]) -> String? {
        for root in folders.flatMap(ancestors) {
            let candidate = URL(fileURLWithPath: relativePath, relativeTo: root).standardizedFileURL.path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Like ``find(_:)``, or a ``CommandFailure`` saying what was looked for and which option
    /// gives it explicitly.
    static func require(_ relativePath: String, option: String) throws -> String {
        guard let path = find(relativePath) else {
            throw CommandFailure("cannot find the default \(relativePath) (looked from the current folder and from the vlm "
                                 + "executable's folder upwards, as a path relative to the VLMKit repository); pass \(option)")
        }
        return path
    }

    /// `start` and every folder above it.
    private static func ancestors(of start: URL) -> [URL] {
        var folders: [URL] = []
        var folder = start.standardizedFileURL
        while true {
            folders.append(folder)
            let parent = folder.deletingLastPathComponent()
            if parent.path == folder.path { break }
            folder = parent
        }
        return folders
    }
}
