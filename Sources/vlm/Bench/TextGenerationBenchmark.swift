import ArgumentParser
import Foundation
import Models
import TensorCore

/// `vlm bench text-generation`: prefill and greedy decoding speed of a Llama checkpoint, the
/// machine's memory read bandwidth, and how close decoding comes to streaming the weights once per
/// token at that bandwidth.
struct TextGenerationBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "text-generation",
        abstract: "Prefill and decode speed of a Llama checkpoint against the memory-bandwidth bound.",
        discussion: """
            Any Llama 3.1 checkpoint directory works. To compare with transformers on the same weights, \
            let the PyTorch peer make one: `python Benchmarks/peer_llama_generate.py --model DIR` builds a \
            seeded random Llama (~190M parameters) the first time, saves it to DIR and times transformers \
            on it; then run `vlm bench text-generation --model DIR`.
            """)

    @Option(help: "A Llama checkpoint directory (see above for making one).")
    var model: String

    @Option(help: "Prompt length in tokens.")
    var promptTokens = 64

    @Option(help: "Tokens to generate (no early stop).")
    var newTokens = 64

    @Option(help: "Timed rounds (the median is reported).")
    var rounds = 3

    func run() throws {
        let llama = try LlamaForCausalLM.load(directory: URL(fileURLWithPath: model))
        var generator = RandomGenerator(seed: 1)
        let prompt = (0..<promptTokens).map { _ in 3 + Int(generator.next() % UInt64(llama.config.vocabSize - 3)) }
        let promptTensor = Tensor(indices: prompt, shape: [1, promptTokens])

        var prefill: [Double] = [], decode: [Double] = []
        withNoGrad {
            _ = llama(promptTensor)  // warm-up: touches every mapped weight page
            for _ in 0..<rounds {
                let cache = llama.makeCache(batch: 1, capacity: promptTokens + newTokens)
                var start = Timing.now()
                _ = llama.decode(promptTensor, attentionMask: Tensor.filled(1, shape: [1, promptTokens], dtype: .int64), cache: cache)
                prefill.append(Timing.now() - start)
                start = Timing.now()
                let output = generate(with: llama, prompts: [prompt], maxNewTokens: newTokens)
                let total = Timing.now() - start
                ensure(output[0].count == newTokens, "expected \(newTokens) new tokens, got \(output[0].count)")
                decode.append(Double(newTokens - 1) / max(total - prefill.last!, 1e-9))
            }
        }
        // One more round with the matrix products timed: how much of prefill is GEMM and how much of
        // a decoding step is GEMV.
        var profiledPrefill = (seconds: 0.0, gemm: 0.0)
        let profiled: (seconds: Double, gemv: Double, calls: Int) = withNoGrad {
            let cache = llama.makeCache(batch: 1, capacity: promptTokens + newTokens)
            BLAS.Profile.reset(enabled: true)
            var start = Timing.now()
            _ = llama.decode(promptTensor, attentionMask: Tensor.filled(1, shape: [1, promptTokens], dtype: .int64), cache: cache)
            profiledPrefill = (Timing.now() - start, BLAS.Profile.totals.seconds)
            var mask = Array(repeating: 1, count: promptTokens)
            BLAS.Profile.reset(enabled: true)
            start = Timing.now()
            for _ in 0..<(newTokens - 1) {
                // The same id every step: the work per step does not depend on it.
                mask.append(1)
                _ = llama.decode(Tensor(indices: [prompt.last!], shape: [1, 1]),
                                 attentionMask: Tensor(indices: mask, shape: [1, mask.count]), cache: cache)
            }
            let seconds = Timing.now() - start
            let totals = BLAS.Profile.totals
            BLAS.Profile.reset(enabled: false)
            return (seconds, totals.seconds, totals.calls)
        }
        // Before the bandwidth probe, whose 1 GiB buffer would count.
        let peakResident = Timing.peakResidentMegabytes()
        let prefillSeconds = prefill.sorted()[prefill.count / 2]
        let tokensPerSecond = decode.sorted()[decode.count / 2]

        // Bytes read per decoded token: every weight except the embedding table (one row of it).
        let weightBytes = llama.parameters().filter { !$0.name.hasSuffix("embed_tokens.weight") || llama.config.tieWordEmbeddings }
            .reduce(0) { $0 + $1.tensor.elementCount * $1.tensor.dtype.byteSize }
        let bandwidth = MemoryBandwidth.measureReadBytesPerSecond()
        let boundTokensPerSecond = bandwidth / Double(weightBytes)
        print(String(format: "prefill %d tokens: %.1f ms (%.0f tokens/s)", promptTokens, prefillSeconds * 1e3,
                     Double(promptTokens) / prefillSeconds))
        print(String(format: "decode: %.1f tokens/s; weights streamed per token %.0f MB; read bandwidth %.1f GB/s → bound %.1f tokens/s (%.0f%% of it)",
                     tokensPerSecond, Double(weightBytes) / 1e6, bandwidth / 1e9, boundTokensPerSecond,
                     100 * tokensPerSecond / boundTokensPerSecond))
        let steps = Double(newTokens - 1)
        print(String(format: "profiled prefill: %.1f ms, of which matrix products %.1f ms (%.0f%%)",
                     profiledPrefill.seconds * 1e3, profiledPrefill.gemm * 1e3, 100 * profiledPrefill.gemm / profiledPrefill.seconds))
        print(String(format: "profiled decoding (%@ weights): %.2f ms per token, of which matrix-vector products %.2f ms (%.0f%%, %d calls per token)",
                     weightDTypeName(llama), profiled.seconds / steps * 1e3, profiled.gemv / steps * 1e3,
                     100 * profiled.gemv / profiled.seconds, Int(Double(profiled.calls) / steps)))
        print(jsonLine([("prefill_ms", prefillSeconds * 1e3), ("decode_tokens_per_s", tokensPerSecond),
                        ("bandwidth_gb_s", bandwidth / 1e9), ("bound_tokens_per_s", boundTokensPerSecond),
                        ("fraction_of_bound", tokensPerSecond / boundTokensPerSecond),
                        ("peak_rss_mb", peakResident)]))
    }
}

/// The dtype of the model's projection weights, for the report.
private func weightDTypeName(_ llama: LlamaForCausalLM) -> String {
    let dtypes = Set(llama.parameters().filter { $0.name.hasSuffix("proj.weight") }.map { "\($0.tensor.dtype)" })
    return dtypes.sorted().joined(separator: "+")
}

/// A STREAM-style read benchmark: every thread sums its share of a buffer far larger than the caches.
enum MemoryBandwidth {
    static func measureReadBytesPerSecond(bytes: Int = 1 << 30) -> Double {
        let count = bytes / 4
        let buffer = Tensor.filled(1, shape: [count])
        let pointer = UnsafePointer(buffer.floatPointer)
        var best = 0.0
        for _ in 0..<5 {
            let start = Timing.now()
            Parallel.forEachRange(count, grain: 1 << 20) { range in
                // Four independent 16-lane accumulators keep many loads in flight; one sum
                // chain would measure the adder's latency, not the memory.
                var a = SIMD16<Float>(), b = SIMD16<Float>(), c = SIMD16<Float>(), d = SIMD16<Float>()
                var i = range.lowerBound
                while i + 64 <= range.upperBound {
                    let base = UnsafeRawPointer(pointer + i)
                    a += base.loadUnaligned(as: SIMD16<Float>.self)
                    b += base.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
                    c += base.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self)
                    d += base.loadUnaligned(fromByteOffset: 192, as: SIMD16<Float>.self)
                    i += 64
                }
                if (a + b + c + d).sum() == -1 { print("") }  // keeps the loop from being optimised away
            }
            best = max(best, Double(bytes) / (Timing.now() - start))
        }
        return withExtendedLifetime(buffer) { best }
    }
}
