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

    /// The recipe with the overrides applied and dataset paths resolved against the data root; read
    /// as every input option is (``readInput(_:)``: `-`, pipes and `/dev/stdin` included).
    func load() throws -> Recipe {
        let fromStandardInput = recipe == "-"
        let file = fromStandardInput ? "<standard input>" : URL(fileURLWithPath: recipe).path
        guard let text = String(data: try readInput(recipe), encoding: .utf8) else {
            throw RecipeError(file: file, reason: "the recipe is not UTF-8 text")
        }
        let directory = fromStandardInput ? URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true)
            : URL(fileURLWithPath: recipe).deletingLastPathComponent()
        return try Recipe.parse(yaml: text, file: file, directory: directory, overrides: overrides,
                                dataRoot: dataRoot.map { URL(fileURLWithPath: $0, isDirectory: true) })
    }
}
