import ArgumentParser
import Foundation
import Models
import TensorCore

/// `vlm bench sample`: K sampled answers per prompt, as rejection sampling and on-policy DPO draw
/// them, against transformers' `generate(num_return_sequences=K)` (`Benchmarks/peer_mllama_sample.py`).
struct SampleBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Sampling K candidates per prompt with Llama 3.2 Vision (the rejection-sampling path) against transformers.",
        discussion: """
            A random model of the preset's shapes samples --samples answers for each of --prompts prompts \
            (one image of 4 tiles each; temperature 1, top-p 0.95, no stop token: every row generates \
            --new-tokens tokens) in one KV-cached batch of prompts × samples rows; each prompt's image is \
            encoded once and shared by its rows. Generated tokens/s = prompts × samples × new tokens / \
            wall time (prefill included), median of --rounds. The last line is JSON.
            Compare: python Benchmarks/peer_mllama_sample.py (same shapes and counts).
            """)

    @Option(help: "Shapes: \(MllamaBenchPreset.names.joined(separator: ", ")).")
    var preset = "small"
    @Option(help: "Prompts per batch.")
    var prompts = 2
    @Option(help: "Samples per prompt (K).")
    var samples = 4
    @Option(help: "Prompt length in tokens.")
    var promptTokens = 64
    @Option(help: "Tokens generated per sample.")
    var newTokens = 32
    @Option(help: "Timed rounds (the median is reported).")
    var rounds = 3
    @Flag(help: "Encode each prompt's image once per sample (as transformers does) instead of once per prompt.")
    var noShare = false

    func validate() throws {
        guard MllamaBenchPreset.named(preset) != nil else { throw ValidationError("unknown preset '\(preset)'") }
        guard prompts > 0, samples > 0, promptTokens > 1, newTokens > 0, rounds > 0 else {
            throw ValidationError("--prompts, --samples, --new-tokens and --rounds must be positive, --prompt-tokens above 1")
        }
    }

    func run() throws {
        let preset = MllamaBenchPreset.named(preset)!
        let model = preset.makeModel()
        let inputs = preset.inputs(batch: prompts, tokens: promptTokens, seed: 1)
        let rows = (0..<prompts).flatMap { u in Array(repeating: Array(inputs.ids[(u * promptTokens)..<((u + 1) * promptTokens)]), count: samples) }
        let masks = (0..<prompts).flatMap { u in
            Array(repeating: inputs.crossAttentionMask.slice(axis: 0, u..<(u + 1)).contiguous().reshaped([promptTokens, 1, preset.tiles]), count: samples)
        }
        let crossMask = MllamaForConditionalGeneration.leftPaddedCrossAttentionMask(masks)
        var rates: [Double] = []
        for round in 0...rounds {
            let start = Timing.now()
            let sampling = SamplingOptions(temperature: 1, topP: 0.95, seed: UInt64(round))
            let output: [[Int]]
            if noShare {
                let repeated = { (tensor: Tensor) in
                    Tensor.concatenate((0..<prompts).flatMap { u in Array(repeating: tensor.slice(axis: 0, u..<(u + 1)), count: samples) }, axis: 0).contiguous()
                }
                let decoder = model.conditioned(pixelValues: repeated(inputs.pixels), aspectRatioIds: repeated(inputs.aspectRatioIds),
                                                aspectRatioMask: repeated(inputs.aspectRatioMask), crossAttentionMask: crossMask)
                output = generate(with: decoder, prompts: rows, maxNewTokens: round == 0 ? 2 : newTokens, sampling: sampling)
            } else {
                let decoder = MllamaSharedImageDecoder(model: model, pixelValues: inputs.pixels, aspectRatioIds: inputs.aspectRatioIds,
                                                       aspectRatioMask: inputs.aspectRatioMask, crossAttentionMask: crossMask,
                                                       samplesPerPrompt: samples)
                output = generate(with: decoder, prompts: rows, maxNewTokens: round == 0 ? 2 : newTokens, sampling: sampling)
            }
            let seconds = Timing.now() - start
            if round > 0 {   // round 0 warms up
                ensure(output.allSatisfy { $0.count == newTokens }, "every row must generate \(newTokens) tokens")
                rates.append(Double(prompts * samples * newTokens) / seconds)
            }
        }
        let median = rates.sorted()[rates.count / 2]
        print("preset=\(preset.name) image encodings=\(noShare ? "per sample" : "per prompt") prompts=\(prompts) samples=\(samples) prompt tokens=\(promptTokens) new tokens=\(newTokens) threads=\(Parallel.threadCount)")
        print(String(format: "sampling: %.1f generated tokens/s (%d rows, median of %d)", median, prompts * samples, rounds))
        print(jsonLine([("sample_tokens_per_s", median), ("peak_rss_mb", Timing.peakResidentMegabytes())]))
    }
}
