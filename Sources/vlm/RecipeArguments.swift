import ArgumentParser
import Foundation
import Training

/// The recipe a command runs, with its `--set` overrides and `--data-root`: the arguments `vlm train`
/// and `vlm compare` share.
struct RecipeArguments: ParsableArguments {
    @Argument(help: "A recipe, e.g. pipelines/default.yaml.")
    var recipe: String

    @Option(name: .customLong("set"), help: "Override a recipe field: STAGE.KEY=VALUE, or KEY=VALUE for every stage (repeatable).")
    var overrides: [String] = []

    @Option(help: "The folder dataset paths are relative to (default: the recipe's data_root).")
    var dataRoot: String?

    /// The recipe with the overrides applied and dataset paths resolved against the data root.
    func load() throws -> Recipe {
        try Recipe.load(from: URL(fileURLWithPath: recipe), overrides: overrides,
                        dataRoot: dataRoot.map { URL(fileURLWithPath: $0, isDirectory: true) })
    }
}
