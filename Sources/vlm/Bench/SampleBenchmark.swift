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
            wall time (prefill included), median of --rounds. A second line splits the batch's time into \
            image encoding, prefill, decoding steps and token choice; a third splits one decoding step \
            into its matrix products, attention and the rest, from one more (untimed) batch. The last line is JSON.
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
        /// One batch: the generated rows, the image-encoding seconds and the timed decoder.
        func batch(maxNewTokens: Int, seed: UInt64) -> (output: [[Int]], encodingSeconds: Double, seconds: Double, decoder: any TimedPhases) {
            let start = Timing.now()
            let sampling = SamplingOptions(temperature: 1, topP: 0.95, seed: seed)
            func decode<Decoder: IncrementalDecoder>(_ base: Decoder) -> (output: [[Int]], encodingSeconds: Double, seconds: Double, decoder: any TimedPhases) {
                let encodingSeconds = Timing.now() - start
                let decoder = PhaseTimedDecoder(base)
                let output = generate(with: decoder, prompts: rows, maxNewTokens: maxNewTokens, sampling: sampling)
                return (output, encodingSeconds, Timing.now() - start, decoder)
            }
            if noShare {
                let repeated = { (tensor: Tensor) in
                    Tensor.concatenate((0..<prompts).flatMap { u in Array(repeating: tensor.slice(axis: 0, u..<(u + 1)), count: samples) }, axis: 0).contiguous()
                }
                // Here each row's image is encoded inside the prefill, as transformers does it.
                return decode(model.conditioned(pixelValues: repeated(inputs.pixels), aspectRatioIds: repeated(inputs.aspectRatioIds),
                                                aspectRatioMask: repeated(inputs.aspectRatioMask), crossAttentionMask: crossMask))
            }
            return decode(MllamaSharedImageDecoder(model: model, pixelValues: inputs.pixels, aspectRatioIds: inputs.aspectRatioIds,
                                                   aspectRatioMask: inputs.aspectRatioMask, crossAttentionMask: crossMask,
                                                   samplesPerPrompt: samples))
        }
        var rates: [Double] = []
        var phases: [SamplePhases] = []
        for round in 0...rounds {
            let run = batch(maxNewTokens: round == 0 ? 2 : newTokens, seed: UInt64(round))
            if round > 0 {   // round 0 warms up
                ensure(run.output.allSatisfy { $0.count == newTokens }, "every row must generate \(newTokens) tokens")
                rates.append(Double(prompts * samples * newTokens) / run.seconds)
                phases.append(SamplePhases(total: run.seconds, imageEncoding: run.encodingSeconds, prefill: run.decoder.prefillSeconds,
                                           decodeSteps: run.decoder.stepSeconds, stepCount: run.decoder.steps))
            }
        }
        // One more batch, untimed, with the matrix products timed: how much of a decoding step
        // is the GEMVs of its linear layers, how much attention, and how much everything else.
        BLAS.Profile.reset(enabled: true)
        let profiled = batch(maxNewTokens: newTokens, seed: 1).decoder
        BLAS.Profile.reset(enabled: false)
        let profiledSteps = Double(max(1, profiled.steps))
        let median = rates.sorted()[rates.count / 2]
        let split = SamplePhases.median(phases)
        print("preset=\(preset.name) image encodings=\(noShare ? "per sample" : "per prompt") prompts=\(prompts) samples=\(samples) prompt tokens=\(promptTokens) new tokens=\(newTokens) threads=\(Parallel.threadCount)")
        print(String(format: "sampling: %.1f generated tokens/s (%d rows, median of %d)", median, prompts * samples, rounds))
        print(String(format: "phases (ms, median): batch %.1f = image encoding %.1f + prefill %.1f + %d decoding steps %.1f (%.2f each) + token choice %.1f",
                     split.total * 1e3, split.imageEncoding * 1e3, split.prefill * 1e3, split.stepCount, split.decodeSteps * 1e3,
                     split.decodeSteps * 1e3 / Double(max(1, split.stepCount)), split.tokenChoice * 1e3))
        let rest = profiled.stepSeconds - profiled.stepProductSeconds - profiled.stepAttentionSeconds
        print(String(format: "decoding step (one more batch, products timed): %.2f ms = matrix products %.2f + attention %.2f + the rest %.2f",
                     profiled.stepSeconds * 1e3 / profiledSteps, profiled.stepProductSeconds * 1e3 / profiledSteps,
                     profiled.stepAttentionSeconds * 1e3 / profiledSteps, rest * 1e3 / profiledSteps))
        print(jsonLine([("sample_tokens_per_s", median), ("image_encoding_ms", split.imageEncoding * 1e3), ("prefill_ms", split.prefill * 1e3),
                        ("decode_steps_ms", split.decodeSteps * 1e3), ("token_choice_ms", split.tokenChoice * 1e3),
                        ("step_products_ms", profiled.stepProductSeconds * 1e3 / profiledSteps),
                        ("step_attention_ms", profiled.stepAttentionSeconds * 1e3 / profiledSteps),
                        ("peak_rss_mb", Timing.peakResidentMegabytes())]))
    }
}

/// What ``SampleBenchmark`` reads from a ``PhaseTimedDecoder`` of any base.
protocol TimedPhases {
    var prefillSeconds: Double { get }
    var stepSeconds: Double { get }
    var steps: Int { get }
    var stepProductSeconds: Double { get }
    var stepAttentionSeconds: Double { get }
}

extension PhaseTimedDecoder: TimedPhases {}

/// Where one sampling batch's wall time went. Token choice is the rest: sampling each row's next
/// token from its logits, plus `generate`'s bookkeeping between steps.
struct SamplePhases {
    var total, imageEncoding, prefill, decodeSteps, tokenChoice: Double
    var stepCount: Int

    init(total: Double, imageEncoding: Double, prefill: Double, decodeSteps: Double, stepCount: Int) {
        self.init(total: total, imageEncoding: imageEncoding, prefill: prefill, decodeSteps: decodeSteps,
                  tokenChoice: total - imageEncoding - prefill - decodeSteps, stepCount: stepCount)
    }

    private init(total: Double, imageEncoding: Double, prefill: Double, decodeSteps: Double, tokenChoice: Double, stepCount: Int) {
        (self.total, self.imageEncoding, self.prefill, self.decodeSteps, self.tokenChoice, self.stepCount) =
            (total, imageEncoding, prefill, decodeSteps, tokenChoice, stepCount)
    }

    /// Each phase's median over the rounds (so the parts need not add up to the median total exactly).
    static func median(_ rounds: [SamplePhases]) -> SamplePhases {
        func middle(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        return SamplePhases(total: middle(rounds.map(\.total)), imageEncoding: middle(rounds.map(\.imageEncoding)),
                            prefill: middle(rounds.map(\.prefill)), decodeSteps: middle(rounds.map(\.decodeSteps)),
                            tokenChoice: middle(rounds.map(\.tokenChoice)), stepCount: rounds[0].stepCount)
    }
}
