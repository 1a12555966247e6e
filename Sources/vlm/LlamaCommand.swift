import ArgumentParser
import Checkpoint
import Foundation
import Models

/// `vlm llama init`: a freshly initialised small Llama 3.1-architecture checkpoint with a given tokenizer.
struct LlamaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "llama",
        abstract: "Make Llama 3.1-architecture text models.",
        subcommands: [LlamaInitCommand.self])
}

struct LlamaInitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a randomly initialised Llama 3.1-architecture checkpoint with a tokenizer's files.",
        discussion: "The vocabulary is the tokenizer's. Example: vlm llama init --tokenizer tok --hidden-size 64 --layers 4 --out base")

    @Option(help: "A folder with tokenizer.json (e.g. from vlm tokenizer train).")
    var tokenizer: String

    @Option(help: "The output folder (must not exist unless --force).")
    var out: String

    @Option(help: "Model width.") var hiddenSize = 64
    @Option(help: "MLP width.") var intermediateSize = 192
    @Option(help: "Decoder layers.") var layers = 4
    @Option(help: "Attention heads.") var heads = 4
    @Option(help: "Key/value heads (grouped-query attention).") var kvHeads = 2
    @Option(help: "Longest sequence.") var maxPositions = 2048
    @Option(help: "Random seed of the weights.") var seed: UInt64 = 0
    @Flag(help: "Replace an existing output folder.") var force = false

    func validate() throws {
        guard hiddenSize > 0, layers > 0, heads > 0, kvHeads > 0, intermediateSize > 0, maxPositions > 0,
              hiddenSize % heads == 0, heads % kvHeads == 0 else {
            throw ValidationError("need positive sizes, --hidden-size divisible by --heads and --heads by --kv-heads")
        }
        // Rotary embeddings turn pairs of a head's dimensions.
        guard (hiddenSize / heads) % 2 == 0 else {
            throw ValidationError("--hidden-size / --heads (the head dimension) must be even for rotary position embeddings; got \(hiddenSize / heads)")
        }
    }

    func run() throws {
        let output = URL(fileURLWithPath: out).resolvingSymlinksInPath()   // a link to a folder is written through
        if FileManager.default.fileExists(atPath: output.path) && !force {
            throw CommandFailure("\(out) exists; pass --force to replace it")
        }
        let folder = URL(fileURLWithPath: tokenizer)
        let tokenizer = try loadTokenizer(path: folder.appendingPathComponent("tokenizer.json").path, extraSpecialTokens: [:])
        let config = LlamaConfig(vocabSize: tokenizer.vocabularySize, hiddenSize: hiddenSize, intermediateSize: intermediateSize,
                                 numHiddenLayers: layers, numAttentionHeads: heads, numKeyValueHeads: kvHeads,
                                 maxPositionEmbeddings: maxPositions, rmsNormEps: 1e-5, rope: RopeParameters(ropeTheta: 500_000))
        try LlamaForCausalLM.initializeCheckpoint(config: config, seed: seed, tokenizerDirectory: folder,
                                                  specialTokens: tokenizer.specialTokens, output: output)
        print("wrote \(out): \(layers) layers of width \(hiddenSize), vocabulary \(tokenizer.vocabularySize)")
    }
}
