import ArgumentParser
import Foundation
import Layers
import Models
import TensorCore
import Training

/// `vlm bench dpo`: one step of the `dpo` stage (`makeDPOStepper`, the code `vlm train` runs) on
/// Llama 3.2 Vision, against TRL's `DPOTrainer` step (`Benchmarks/peer_dpo_step.py`).
struct DPOBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpo",
        abstract: "Time a DPO step on Llama 3.2 Vision (the dpo stage's step) against TRL's DPOTrainer.",
        discussion: """
            A fixed batch of --pairs preference pairs: each pair is one prompt of --prompt-tokens tokens \
            (one image of the preset's 4 tiles, <|image|> second) with a chosen and a rejected response \
            of --response-tokens tokens each; the batch has 2 × pairs rows (chosen rows, then rejected), \
            every row carrying its pair's image, as the dpo stage's loader and TRL's collator lay it out. \
            One step: the frozen reference's log-probabilities without a graph, the policy's forward and \
            backward on all rows, the sigmoid DPO loss (β 0.1) on log-probabilities summed over the \
            response tokens, global-norm clipping at 1 and AdamW (lr 1e-4, weight decay 0.01): the dpo \
            stage's defaults. Trainable (--trainable): the image encoder, projector and cross-attention \
            layers, as in the peer (text self-attention, the whole embedding table and lm_head frozen; \
            the recipes also train <|image|>'s embedding row, extraEmbeddingRows, and then the policy \
            and the reference cannot share the layers before the first cross-attention layer). After \
            one warm-up step, \
            --steps steps are timed and the median is reported. The first step's loss is ln 2 whatever \
            the weights (policy = reference), which is how the peer's work is checked to be the same. \
            The last line is JSON. Peer: python Benchmarks/peer_dpo_step.py with the same counts; \
            Benchmarks/compare_dpo.sh alternates the two (see Docs/benchmarks.md).
            """)

    @Option(help: "Shapes: \(MllamaBenchPreset.names.joined(separator: ", ")).")
    var preset = "small"

    @Option(help: ArgumentHelp("Time this mllama model folder instead of the preset's random model (one image of one tile per pair).",
                               valueName: "dir"))
    var model: String?

    @Option(help: "Preference pairs per step (the batch has twice as many rows).")
    var pairs = 4

    @Option(help: "Prompt tokens per pair (the image token included).")
    var promptTokens = 64

    @Option(help: "Tokens of each response (chosen and rejected alike).")
    var responseTokens = 64

    @Option(help: "Timed steps (the median is reported).")
    var steps = 5

    @Option(help: ArgumentHelp("Parameter groups to train, comma-separated (default: the peer's set; the recipes add extraEmbeddingRows).",
                               valueName: "groups"))
    var trainable = "visionModel,projector,crossAttentionLayers"

    @Flag(help: "Also list GEMM time by shape for the profiled step.")
    var gemmShapes = false

    /// The groups of `--trainable`; an unknown name is an error that lists the groups.
    func trainableGroups() throws -> [MllamaParameterGroup] {
        try commaSeparated(trainable, option: "--trainable", noun: "a parameter group")
    }

    func validate() throws {
        _ = try trainableGroups()
        guard MllamaBenchPreset.named(preset) != nil else { throw ValidationError("unknown preset '\(preset)'") }
        guard pairs > 0, responseTokens > 0, steps > 0 else { throw ValidationError("--pairs, --response-tokens and --steps must be positive") }
        guard promptTokens >= 2 else { throw ValidationError("--prompt-tokens must be at least 2 (a token, then <|image|>)") }
    }

    func run() throws {
        var preset = MllamaBenchPreset.named(preset)!
        let tokens = promptTokens + responseTokens
        let policy: MllamaForConditionalGeneration, reference: MllamaForConditionalGeneration
        if let folder = model {
            // The dpo stage loads its input twice: the policy, and the reference it never trains.
            policy = try MllamaForConditionalGeneration.load(directory: URL(fileURLWithPath: folder))
            reference = try MllamaForConditionalGeneration.load(directory: URL(fileURLWithPath: folder))
            preset = preset.timing(policy.config, batch: pairs, tokens: tokens, name: folder)
        } else {
            policy = preset.makeModel()
            reference = preset.makeModel()   // the same seed: the same weights
        }
        policy.setTrainable(try trainableGroups())
        let optimizer = AdamW(module: policy, learningRate: 1e-4, weightDecay: 0.01)
        let stepper = makeDPOStepper(policy: policy, reference: reference, optimizer: optimizer, maxGradNorm: 1, beta: 0.1)
        let batch = preferenceBatch(preset, pairs: pairs, promptTokens: promptTokens, responseTokens: responseTokens)

        var report = stepper.step([batch], learningRate: 1e-4)   // warm-up: optimiser moments, buffer pool
        let first = (loss: report.loss, chosenPerToken: (stepper.lastStepMetrics["logps/chosen"] ?? .nan) / Double(responseTokens))
        var wall: [Double] = [], cpu: [Double] = []
        var phases: [(forward: Double, backward: Double, optimizer: Double)] = []
        for _ in 0..<steps {
            let start = Timing.now(), cpuStart = Timing.processCPUSeconds()
            report = stepper.step([batch], learningRate: 1e-4)
            wall.append(Timing.now() - start)
            cpu.append(Timing.processCPUSeconds() - cpuStart)
            phases.append((report.forwardSeconds, report.backwardSeconds, report.optimizerSeconds))
        }
        // One more step with every GEMM timed.
        BLAS.Profile.reset(enabled: true, byShape: gemmShapes)
        let profiledStart = Timing.now()
        _ = stepper.step([batch], learningRate: 1e-4)
        let profiledSeconds = Timing.now() - profiledStart
        let gemm = BLAS.Profile.totals
        let shapes = BLAS.Profile.byShape
        BLAS.Profile.reset(enabled: false)
        let median = { (values: [Double]) in values.sorted()[values.count / 2] }
        let seconds = median(wall)
        let rows = 2 * pairs
        let peak = Timing.peakResidentMegabytes()
        let counts = policy.parameterCount()
        print("preset=\(preset.name) params=\(String(format: "%.1f", Double(counts.total) / 1e6))M "
              + "trainable=\(String(format: "%.1f", Double(counts.trainable) / 1e6))M pairs=\(pairs) rows=\(rows) "
              + "tokens per row=\(tokens) (prompt \(promptTokens), response \(responseTokens)) threads=\(Parallel.threadCount)")
        print("CPU: \(Timing.cpuModelName) (\(CPUFeatures.current)); OpenBLAS core \(OpenBLASStartup.coreSummary); load \(Timing.loadAverage)")
        print(String(format: "first step: loss %.6f (ln 2 = %.6f: policy = reference), chosen log-prob per response token %.4f",
                     first.loss, Foundation.log(2.0), first.chosenPerToken))
        print(String(format: "step %.0f ms (median of %d; min %.0f, max %.0f), CPU time %.0f ms  pairs/s %.2f  tokens/s %.0f  loss %.6f",
                     seconds * 1e3, steps, wall.min()! * 1e3, wall.max()! * 1e3, median(cpu) * 1e3, Double(pairs) / seconds,
                     Double(rows * tokens) / seconds, report.loss))
        print(String(format: "phases: forward (reference and policy) %.0f ms, backward %.0f ms, clipping and optimiser %.0f ms",
                     median(phases.map(\.forward)) * 1e3, median(phases.map(\.backward)) * 1e3, median(phases.map(\.optimizer)) * 1e3))
        print(String(format: "profiled step %.0f ms: GEMM %.1f GFLOP in %.0f ms (%.0f%%, %d calls, %.0f GFLOP/s inside GEMM); "
                     + "the policy and the reference share their frozen layers before the first image read: %@",
                     profiledSeconds * 1e3, Double(gemm.flops) / 1e9, gemm.seconds * 1e3, 100 * gemm.seconds / profiledSeconds, gemm.calls,
                     Double(gemm.flops) / max(gemm.seconds, 1e-9) / 1e9, policy.sharesFrozenPrefix(with: reference) ? "yes" : "no"))
        if gemmShapes { printGEMMShapes(shapes) }
        print(String(format: "peak RSS %.0f MB", peak))
        print(jsonLine([("step_ms", seconds * 1e3), ("cpu_ms", median(cpu) * 1e3), ("pairs_per_s", Double(pairs) / seconds),
                        ("tokens_per_s", Double(rows * tokens) / seconds), ("peak_rss_mb", peak),
                        ("forward_ms", median(phases.map(\.forward)) * 1e3), ("backward_ms", median(phases.map(\.backward)) * 1e3),
                        ("optimizer_ms", median(phases.map(\.optimizer)) * 1e3), ("gemm_gflop", Double(gemm.flops) / 1e9),
                        ("first_loss", first.loss), ("first_logps_chosen_per_token", first.chosenPerToken),
                        ("pairs", pairs), ("prompt_tokens", promptTokens), ("response_tokens", responseTokens), ("steps", steps),
                        ("threads", Parallel.threadCount), ("cpu", Timing.cpuModelName), ("openblas_core", BLAS.coreName)]))
    }
}

/// A DPO micro-batch of `pairs` pairs as the dpo stage's loader lays it out: rows `0..<P` are
/// prompt + chosen response, rows `P..<2P` the same prompts + rejected responses; every row carries
/// its pair's image; only response positions are learned. Prompts, images and chosen responses
/// are the preset's seeded inputs (`MllamaBenchPreset.inputs`), rejected responses other seeded ids.
func preferenceBatch(_ preset: MllamaBenchPreset, pairs: Int, promptTokens: Int, responseTokens: Int) -> TrainingBatch {
    let t = promptTokens + responseTokens
    let chosen = preset.inputs(batch: pairs, tokens: t, seed: 0)
    let vocabulary = preset.config.textConfig.llama.vocabSize
    var generator = RandomGenerator(seed: 1)
    var rejected = chosen.ids
    for row in 0..<pairs {
        for column in promptTokens..<t { rejected[row * t + column] = 3 + Int(generator.next() % UInt64(vocabulary - 5)) }
    }
    let ids = chosen.ids + rejected                                                   // (2P·T)
    let labels = ids.enumerated().map { $0.offset % t < promptTokens ? -100 : $0.element }
    let twice = { (tensor: Tensor) in Tensor.concatenate([tensor, tensor], axis: 0).contiguous() }
    // Each pair's image is encoded once for its chosen and rejected rows, as the dpo stage's batches do.
    var inputs = ModelInputs(inputIDs: Tensor(indices: ids, shape: [2 * pairs, t]), pixelValues: chosen.pixels,   // (2P, T)
                             aspectRatioIDs: chosen.aspectRatioIds, aspectRatioMask: chosen.aspectRatioMask,
                             crossAttentionMask: twice(chosen.crossAttentionMask))
    inputs.imageRowGroups = 2
    let labelTensor = Tensor(indices: labels, shape: [2 * pairs, t])
    return TrainingBatch(inputs: inputs, labels: labelTensor, lossTokenCount: learnedTokenCount(labels: labelTensor),
                         sampleIDs: (0..<pairs).map { "pair-\($0)#chosen" } + (0..<pairs).map { "pair-\($0)#rejected" })
}
