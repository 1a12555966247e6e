import ArgumentParser

@main
struct VLM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vlm",
        abstract: "VLMKit: build, train and compare vision-language models on a CPU.",
        // InspectCommand and CheckpointBenchmark are registered here for testing; the benchmark is
        // meant to be mounted under `vlm bench` when that group exists.
        subcommands: [InspectCommand.self, CheckpointBenchmark.self])
}
