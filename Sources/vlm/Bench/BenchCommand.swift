import ArgumentParser

/// `vlm bench …`: benchmarks that print human-readable lines and, last, one JSON object.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure VLMKit's speed (each subcommand ends with one JSON line).",
        subcommands: [OpsBenchmark.self, TrainBenchmark.self, DPOBenchmark.self, MllamaGenerateBenchmark.self, SampleBenchmark.self, TextGenerationBenchmark.self, CheckpointBenchmark.self, ImageBenchmark.self, TokenizerBenchmark.self])
}
