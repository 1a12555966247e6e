import ArgumentParser
import Foundation
import Models
import TensorCore

/// `vlm bench generate`: Llama 3.2 Vision prefill and greedy decoding with one 4-tile image, as
/// `../shared/bench/peer_mllama_generate.py` measures them.
struct MllamaGenerateBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Prefill and greedy-decoding speed of Llama 3.2 Vision with one image (the PyTorch peer's preset).",
        discussion: """
            A random model of the preset's shapes reads a --prompt-tokens prompt (<|image|> second) with \
            one image of 4 tiles; prefill is one forward pass over image and prompt filling a fresh \
            cache, decoding is --new-tokens greedy tokens (no early stop): decode tokens/s = \
            (new − 1) / (generate time − prefill time), as the peer computes it. Medians of --rounds. \
            The last line is JSON.
            Compare: cd ../shared/bench && python peer_mllama_generate.py
            """)

    @Option(help: "Shapes: \(MllamaBenchPreset.names.joined(separator: ", ")).")
    var preset = "small"

    @Option(help: "Prompt length in tokens.")
    var promptTokens = 64

    @Option(help: "Tokens to generate.")
    var newTokens = 64

    @Option(help: "Timed rounds (the median is reported).")
    var rounds = 3

    func validate() throws {
        guard MllamaBenchPreset.named(preset) != nil else { throw ValidationError("unknown preset '\(preset)'") }
        guard promptTokens > 1, newTokens > 1, rounds > 0 else {
            throw ValidationError("--prompt-tokens and --new-tokens must exceed 1, --rounds must be positive")
        }
    }

    func run() throws {
        let preset = MllamaBenchPreset.named(preset)!
        let model = preset.makeModel()
        let inputs = preset.inputs(batch: 1, tokens: promptTokens, seed: 1)
        let decoder = model.conditioned(pixelValues: inputs.pixels, aspectRatioIds: inputs.aspectRatioIds,
                                        aspectRatioMask: inputs.aspectRatioMask, crossAttentionMask: inputs.crossAttentionMask)
        let prompt = Tensor(indices: inputs.ids, shape: [1, promptTokens])
        let promptMask = Tensor.filled(1, shape: [1, promptTokens], dtype: .int64)

        var prefill: [Double] = [], decode: [Double] = []
        withNoGrad {
            _ = generate(with: decoder, prompts: [inputs.ids], maxNewTokens: 4)  // warm-up
            for _ in 0..<rounds {
                let cache = decoder.makeCache(batch: 1, capacity: promptTokens + newTokens)
                var start = Timing.now()
                _ = decoder.decode(prompt, attentionMask: promptMask, cache: cache)
                prefill.append(Timing.now() - start)
                start = Timing.now()
                let output = generate(with: decoder, prompts: [inputs.ids], maxNewTokens: newTokens)
                let total = Timing.now() - start
                ensure(output[0].count == newTokens, "expected \(newTokens) new tokens, got \(output[0].count)")
                decode.append(Double(newTokens - 1) / max(total - prefill.last!, 1e-9))
            }
        }
        // One more round with BLAS calls timed: how much of a decoding step is GEMV.
        let profiled: (seconds: Double, blas: Double, calls: Int) = withNoGrad {
            let cache = decoder.makeCache(batch: 1, capacity: promptTokens + newTokens)
            _ = decoder.decode(prompt, attentionMask: promptMask, cache: cache)
            // Feeds the prompt's last id every step: the work per step does not depend on the id.
            let ids = [inputs.ids.last!]
            var mask = Array(repeating: 1, count: promptTokens)
            BLAS.Profile.reset(enabled: true)
            let start = Timing.now()
            for _ in 0..<(newTokens - 1) {
                mask.append(1)
                _ = decoder.decode(Tensor(indices: ids, shape: [1, 1]),
                                   attentionMask: Tensor(indices: mask, shape: [1, mask.count]), cache: cache)
            }
            let seconds = Timing.now() - start
            let totals = BLAS.Profile.totals
            BLAS.Profile.reset(enabled: false)
            return (seconds, totals.seconds, totals.calls)
        }
        let prefillSeconds = prefill.sorted()[prefill.count / 2]
        let tokensPerSecond = decode.sorted()[decode.count / 2]
        let llama = preset.config.textConfig.llama
        // Weights read per decoded token: every text layer and the head (the image keys and values are cached).
        let textWeights = model.languageModel.parameters().filter { !$0.name.contains("embed_tokens") }
            .reduce(0) { $0 + $1.tensor.elementCount * $1.tensor.dtype.byteSize }
        print("preset=\(preset.name) text layers=\(llama.numHiddenLayers) threads=\(Parallel.threadCount) blas=\(BLAS.configuration)")
        print(String(format: "prefill (image + %d tokens): %.1f ms", promptTokens, prefillSeconds * 1e3))
        print(String(format: "decode: %.1f tokens/s (%d new tokens, median of %d; text weights %.0f MB per token)",
                     tokensPerSecond, newTokens, rounds, Double(textWeights) / 1e6))
        let peak = Timing.peakResidentMegabytes()  // before the bandwidth test's 1 GB buffer
        let bandwidth = MemoryBandwidth.measureReadBytesPerSecond()
        let perToken = profiled.seconds / Double(newTokens - 1)
        print(String(format: "profiled decoding: %.2f ms per token, of which BLAS (GEMV/GEMM) %.2f ms (%.0f%%, %d calls per token), %.1f GB/s of text weights streamed",
                     perToken * 1e3, profiled.blas / Double(newTokens - 1) * 1e3, 100 * profiled.blas / profiled.seconds,
                     profiled.calls / (newTokens - 1), Double(textWeights) / perToken / 1e9))
        print(String(format: "memory read bandwidth %.1f GB/s → bound %.0f tokens/s (decoding reaches %.0f%% of it)",
                     bandwidth / 1e9, bandwidth / Double(textWeights), 100 * tokensPerSecond / (bandwidth / Double(textWeights))))
        print(String(format: "peak RSS %.0f MB", peak))
        print(jsonLine([("prefill_ms", prefillSeconds * 1e3), ("decode_tokens_per_s", tokensPerSecond),
                        ("bandwidth_gb_s", bandwidth / 1e9), ("peak_rss_mb", peak)]))
    }
}
