import ArgumentParser
import Foundation
import Models
import Processing
import Yams

/// `vlm adapters …`: build adapter checkpoints from text models.
struct AdaptersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adapters",
        abstract: "Add gated cross-attention adapters and an image encoder to a Llama checkpoint.",
        subcommands: [Initialize.self])

    struct Initialize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Turn a Llama 3.1 checkpoint into an mllama checkpoint with fresh adapters (gates at 0: a drop-in).")

        @Option(help: "The Llama checkpoint directory.")
        var textModel: String

        @Option(help: "An adapter layout (adapters/*.yaml).")
        var adapter: String

        @Option(help: "The directory to write the mllama checkpoint into.")
        var out: String

        @Option(help: "Seed for the fresh weights.")
        var seed: UInt64 = 0

        @Option(help: "The folder holding the text model's tokenizer.json (default: --text-model).")
        var tokenizer: String?

        func run() throws {
            let layout = try loadAdapterLayout(path: adapter)
            let textModel = URL(fileURLWithPath: textModel), output = URL(fileURLWithPath: out)
            // Read and check the tokenizer before writing weights, so a bad source leaves nothing behind.
            let supportFiles = try VisionCheckpointFiles(
                source: tokenizer.map { URL(fileURLWithPath: $0) } ?? textModel,
                config: try AdapterInitialization.configuration(textModel: textModel, layout: layout))
            let config = try AdapterInitialization.initialize(textModel: textModel, layout: layout, output: output, seed: seed)
            try supportFiles.write(to: output)
            let text = config.textConfig.llama
            print("wrote \(out): \(text.numHiddenLayers) layers (cross-attention at \(config.textConfig.crossAttentionLayers)), "
                  + "image encoder \(config.visionConfig.hiddenSize) wide with \(config.visionConfig.numHiddenLayers) + "
                  + "\(config.visionConfig.numGlobalLayers) layers, <|image|> = \(config.imageTokenIndex)")
        }
    }
}

/// Reads an adapter layout, naming the file in errors.
func loadAdapterLayout(path: String) throws -> AdapterLayout {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
        throw CommandFailure("\(path): cannot read (\(error.localizedDescription))")
    }
    do { return try YAMLDecoder().decode(AdapterLayout.self, from: text) } catch {
        throw CommandFailure("\(path): not a valid adapter layout: \(error)")
    }
}
