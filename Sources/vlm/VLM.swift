import ArgumentParser

@main
struct VLM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vlm",
        abstract: "VLMKit: build, train and compare vision-language models on a CPU.",
        // TokenizerBenchmark (`tokenizer`) belongs under `vlm bench`, mounted where that group lives.
        subcommands: [TokenizeCommand.self])
}
