import ArgumentParser

@main
struct VLM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vlm",
        abstract: "VLMKit: build, train and compare vision-language models on a CPU.",
        subcommands: [
            InspectCommand.self, TokenizeCommand.self, PreprocessCommand.self, ForwardCommand.self,
            GenerateCommand.self, AdaptersCommand.self, FuzzCommand.self, Bench.self,
        ])

    static func main() {
        OpenBLASStartup.run()
        main(nil)
    }
}
