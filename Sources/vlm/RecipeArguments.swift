import ArgumentParser
import Foundation
import Training

/// The recipe a command runs, with its `--set` overrides and `--data-root`: the arguments `vlm train`
/// and `vlm compare` share.
struct RecipeArguments: ParsableArguments {
    @Argument(help: "A recipe, e.g. pipelines/default.yaml ('-' reads standard input; its paths are relative to the current folder).")
    var recipe: String

    @Option(name: .customLong("set"), help: "Override a recipe field: STAGE.KEY=VALUE, or KEY=VALUE for every stage (repeatable).")
    var overrides: [String] = []

    @Option(help: "The folder dataset paths are relative to (default: the recipe's data_root).")
    var dataRoot: String?

    /// The recipe with the overrides applied and dataset paths resolved against the data root.
    func load() throws -> Recipe {
        let root = dataRoot.map { URL(fileURLWithPath: $0, isDirectory: true) }
        guard recipe == "-" else { return try Recipe.load(from: URL(fileURLWithPath: recipe), overrides: overrides, dataRoot: root) }
        let data = FileHandle.standardInput.readDataToEndOfFile()
        guard let text = String(data: data, encoding: .utf8) else {
            throw RecipeError(file: "<standard input>", reason: "the recipe is not UTF-8 text")
        }
        return try Recipe.parse(yaml: text, file: "<standard input>",
                                directory: URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true),
                                overrides: overrides, dataRoot: root)
    }
}
