import ArgumentParser
import Foundation
import Layers
import Models
import TensorCore
import Training

extension MatrixPrecision: ExpressibleByArgument {}

/// `vlm bench train`: one Llama 3.2 Vision adapter-training step — forward, loss, backward, AdamW —
/// at the shapes and with the frozen/trainable split of `../shared/bench/peer_mllama_train.py`.
struct TrainBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Time a Llama 3.2 Vision adapter-training step (the PyTorch peer's preset).",
        discussion: """
            Text self-attention layers, embeddings and lm_head are frozen; the cross-attention layers, \
            the vision encoder and the projector train with AdamW (lr 1e-4, weight decay 0.01), fp32 \
            (--precision bf16: linear layers' products with bf16 operands and float32 sums, on CPUs with \
            AVX512-BF16). The loss is transformers' causal-LM loss (labels = input ids, shifted). After \
            one warm-up step, --steps steps are timed; the median is reported. Then one more step runs \
            with GEMMs timed (BLAS.Profile) and the forward, backward and optimiser phases timed. The \
            last line is JSON. The PyTorch peer of this step is peer_mllama_train.py (--steps 5, \
            optionally --compile or --autocast bf16); see Docs/benchmarks.md.
            """)

    @Option(help: "Shapes: \(MllamaBenchPreset.names.joined(separator: ", ")).")
    var preset = "small"

    @Option(help: ArgumentHelp("Time this mllama model folder instead of the preset's random model (e.g. to compare with a vlm train run of it).",
                               valueName: "dir"))
    var model: String?

    @Option(help: "Rows per step (with --model; default: the preset's).")
    var batch: Int?

    @Option(help: "Text tokens per row (with --model; default: the preset's).")
    var tokens: Int?

    @Option(help: "Timed steps (the median is reported).")
    var steps = 5

    @Flag(help: "Also list GEMM time by shape for the profiled step.")
    var gemmShapes = false

    @Flag(help: "Recompute activations in the backward pass (the recipe key activation_checkpointing); compare peak RSS.")
    var activationCheckpointing = false

    @Option(help: "Linear layers' matrix products: float32, or bf16 (bf16 operands, float32 sums; the recipe key precision).")
    var precision: MatrixPrecision = .float32

    @Flag(help: "With --precision bf16, keep trainable weights' products in float32 (only frozen weights' in bf16).")
    var bf16FrozenOnly = false

    @Option(help: "Also print the loss of every step (warm-up included) for this many steps, from the same seed (accuracy runs).")
    var lossTrace = 0

    @Option(help: "Instead: time float32, bf16 and bf16-frozen-only steps in alternation, this many rounds, in one process (a fair comparison on a loaded machine).")
    var alternate = 0

    func validate() throws {
        guard MllamaBenchPreset.named(preset) != nil else { throw ValidationError("unknown preset '\(preset)'") }
        guard steps > 0 else { throw ValidationError("--steps must be positive") }
        guard model != nil || (batch == nil && tokens == nil) else { throw ValidationError("--batch and --tokens go with --model") }
        guard (batch ?? 1) > 0, (tokens ?? 2) > 1 else { throw ValidationError("--batch must be positive and --tokens at least 2") }
        guard lossTrace >= 0 else { throw ValidationError("--loss-trace must not be negative") }
        if let reason = (alternate > 0 ? MatrixPrecision.bf16 : precision).unsupportedReason() { throw ValidationError(reason) }
    }

    func run() throws {
        var preset = MllamaBenchPreset.named(preset)!
        let model: MllamaForConditionalGeneration
        if let folder = self.model {
            model = try MllamaForConditionalGeneration.load(directory: URL(fileURLWithPath: folder))
            preset = preset.timing(model.config, batch: batch ?? preset.batch, tokens: tokens ?? preset.tokens, name: folder)
        } else {
            model = preset.makeModel()
        }
        model.setTrainable([.crossAttentionLayers, .visionModel, .projector])
        model.setActivationCheckpointing(activationCheckpointing)
        let optimizer = AdamW(module: model, learningRate: 1e-4, weightDecay: 0.01)
        // The trainer's own step (vlm train runs the same code). No clipping, as the peer; the norm is
        // still computed (one pass over the trainable gradients).
        let stepper = TrainingStepper(model: model, optimizer: optimizer, maxGradNorm: 0)
        let (b, t) = (preset.batch, preset.tokens)
        let inputs = preset.inputs(batch: b, tokens: t, seed: 0)
        // transformers' ForCausalLMLoss: labels = input ids, every next token learned.
        // A loaded model's <|image|> id lies past its lm_head (the extra embedding rows), so the
        // image token is not a target there, as in vlm train.
        let imageToken = model.config.imageTokenIndex
        let targets = self.model == nil ? inputs.ids : inputs.ids.map { $0 == imageToken ? -100 : $0 }
        let labels = Tensor(indices: targets, shape: [b, t])
        let batch = TrainingBatch(
            inputs: ModelInputs(inputIDs: Tensor(indices: inputs.ids, shape: [b, t]), pixelValues: inputs.pixels,
                                aspectRatioIDs: inputs.aspectRatioIds, aspectRatioMask: inputs.aspectRatioMask,
                                crossAttentionMask: inputs.crossAttentionMask),
            labels: labels, lossTokenCount: learnedTokenCount(labels: labels), sampleIDs: [])

        if alternate > 0 {
            alternatePrecisions(stepper: stepper, batch: batch, tokens: b * t)
            return
        }
        var phases = (forward: 0.0, backward: 0.0, optimizer: 0.0)
        var lastLoss = 0.0
        let mixed = precision == .bf16 ? BFloat16Linear(convertsTrainableWeights: !bf16FrozenOnly) : nil
        func step() {
            let report = mixed.map { scope in scope.run { stepper.step([batch], learningRate: 1e-4) } }
                ?? stepper.step([batch], learningRate: 1e-4)
            phases = (report.forwardSeconds, report.backwardSeconds, report.optimizerSeconds)
            lastLoss = report.loss
        }

        if lossTrace > 0 {
            // The same batch every step, so the loss falls as the adapters fit it.
            var losses: [Double] = []
            for _ in 0..<lossTrace {
                step()
                losses.append(lastLoss)
            }
            print("loss trace (\(precision.rawValue)): " + losses.map { String(format: "%.6f", $0) }.joined(separator: " "))
        }
        step()  // warm-up: optimiser moments, buffer pool
        var samples: [Double] = []
        var phaseSamples: [(forward: Double, backward: Double, optimizer: Double)] = []
        for _ in 0..<steps {
            let start = Timing.now()
            step()
            samples.append(Timing.now() - start)
            phaseSamples.append(phases)
        }
        let seconds = samples.sorted()[samples.count / 2]
        let median = { (values: [Double]) in values.sorted()[values.count / 2] }
        let forward = median(phaseSamples.map(\.forward)), backward = median(phaseSamples.map(\.backward))
        let optimizerSeconds = median(phaseSamples.map(\.optimizer))

        // One more step with every GEMM timed.
        BLAS.Profile.reset(enabled: true, byShape: gemmShapes)
        let profiledStart = Timing.now()
        step()
        let profiledSeconds = Timing.now() - profiledStart
        let gemm = BLAS.Profile.totals
        let shapes = BLAS.Profile.byShape
        let attention = BLAS.Profile.attentionTotals
        BLAS.Profile.reset(enabled: false)

        let flops = MllamaTrainingFlops(preset: preset)
        let tokensPerSecond = Double(b * t) / seconds
        let imagesPerSecond = Double(b) / seconds
        let gflops = flops.total / seconds / 1e9
        let total = model.parameterCount()
        print("preset=\(preset.name) params=\(String(format: "%.1f", Double(total.total) / 1e6))M "
              + "trainable=\(String(format: "%.1f", Double(total.trainable) / 1e6))M threads=\(Parallel.threadCount) "
              + "blas=\(BLAS.configuration) activation_checkpointing=\(activationCheckpointing) precision=\(precision.rawValue)"
              + (precision == .bf16 ? (bf16FrozenOnly ? " (frozen weights only)" : " (frozen and trainable weights)") : ""))
        print("OpenBLAS core \(OpenBLASStartup.coreSummary): \(OpenBLASCore.current.reason); CPU: \(CPUFeatures.current)")
        print(String(format: "step %.0f ms (median of %d; min %.0f, max %.0f)  tokens/s %.0f  images/s %.1f  loss %.4f",
                     seconds * 1e3, steps, samples.min()! * 1e3, samples.max()! * 1e3, tokensPerSecond, imagesPerSecond, lastLoss))
        print(String(format: "phases: forward %.0f ms, backward %.0f ms, optimiser %.0f ms", forward * 1e3, backward * 1e3,
                     optimizerSeconds * 1e3))
        // torch's flop counter was read for the small preset only.
        let torchFlops = self.model == nil ? 231e9 : Double.nan
        print(String(format: "FLOPs per step: %.1f G counted here (forward %.1f, backward %.1f; %.1f G in GEMMs), %.0f G per torch's flop counter",
                     flops.total / 1e9, flops.forward / 1e9, flops.backward / 1e9, Double(gemm.flops) / 1e9, torchFlops / 1e9))
        print(String(format: "achieved: %.0f GFLOP/s (own count), %.0f GFLOP/s (torch's count)", gflops, torchFlops / seconds / 1e9))
        print(String(format: "profiled step %.0f ms: GEMM %.0f ms (%.0f%%, %d calls, %.0f GFLOP/s inside GEMM), everything else %.0f ms",
                     profiledSeconds * 1e3, gemm.seconds * 1e3, 100 * gemm.seconds / profiledSeconds, gemm.calls,
                     Double(gemm.flops) / max(gemm.seconds, 1e-9) / 1e9, (profiledSeconds - gemm.seconds) * 1e3))
        // Linear-layer GEMMs run one at a time (OpenBLAS threads each), so their summed time is wall
        // time; attention's GEMMs run concurrently on the workers and are counted inside attention.
        let linearGemm = gemm.seconds - attention.gemmSeconds
        let rest = profiledSeconds - linearGemm - attention.seconds
        print(String(format: "where the profiled step's time goes: GEMM in linear layers %.0f ms (%.0f%%), fused attention %.0f ms (%.0f%%; its GEMMs %.0f ms of thread time), everything else %.0f ms (%.0f%%: element-wise, norms, loss, copies, optimiser, autograd)",
                     linearGemm * 1e3, 100 * linearGemm / profiledSeconds, attention.seconds * 1e3,
                     100 * attention.seconds / profiledSeconds, attention.gemmSeconds * 1e3, rest * 1e3, 100 * rest / profiledSeconds))
        if gemmShapes { printGEMMShapes(shapes) }
        let peak = Timing.peakResidentMegabytes()
        print(String(format: "peak RSS %.0f MB", peak))
        print(jsonLine([("openblas_core", BLAS.coreName), ("step_ms", seconds * 1e3), ("tokens_per_s", tokensPerSecond), ("images_per_s", imagesPerSecond),
                        ("gflops", gflops), ("gflops_torch_count", torchFlops / seconds / 1e9), ("step_gflop", flops.total / 1e9),
                        ("forward_ms", forward * 1e3), ("backward_ms", backward * 1e3), ("optimizer_ms", optimizerSeconds * 1e3),
                        ("gemm_share", gemm.seconds / profiledSeconds), ("linear_gemm_share", linearGemm / profiledSeconds),
                        ("attention_share", attention.seconds / profiledSeconds), ("peak_rss_mb", peak),
                        ("precision", precision.rawValue), ("bf16_packed_mb", Double(mixed?.cachedBytes ?? 0) / 1e6)]))
    }
}

extension TrainBenchmark {
    /// Steps in float32, bf16 (all linear products) and bf16 (frozen weights' products only), one
    /// of each per round, so that the machine's load changes hit all three alike.
    func alternatePrecisions(stepper: TrainingStepper, batch: TrainingBatch, tokens: Int) {
        let modes: [(name: String, scope: BFloat16Linear?)] = [
            ("float32", nil), ("bf16", BFloat16Linear()), ("bf16 frozen only", BFloat16Linear(convertsTrainableWeights: false)),
        ]
        func step(_ scope: BFloat16Linear?) -> (wall: Double, cpu: Double) {
            let start = Timing.now(), cpuStart = Timing.processCPUSeconds()
            _ = scope.map { scope in scope.run { stepper.step([batch], learningRate: 1e-4) } } ?? stepper.step([batch], learningRate: 1e-4)
            return (Timing.now() - start, Timing.processCPUSeconds() - cpuStart)
        }
        for mode in modes { _ = step(mode.scope) }   // warm-up: buffer pool, packed frozen weights
        var wall = Array(repeating: [Double](), count: modes.count), cpu = wall
        for round in 0..<alternate {
            for (index, mode) in modes.enumerated() {
                let (w, c) = step(mode.scope)
                wall[index].append(w)
                cpu[index].append(c)
            }
            print("round \(round + 1) (load \(Timing.loadAverage)): " + modes.indices.map {
                String(format: "%@ %.0f ms (%.0f ms CPU)", modes[$0].name, wall[$0][round] * 1e3, cpu[$0][round] * 1e3)
            }.joined(separator: ", "))
            fflush(stdout)
        }
        let median = { (values: [Double]) in values.sorted()[values.count / 2] }
        print("CPU: \(CPUFeatures.current); OpenBLAS core \(BLAS.coreName); threads \(Parallel.threadCount)")
        var json: [(String, Any)] = []
        for (index, mode) in modes.enumerated() {
            let ratios = zip(wall[0], wall[index]).map { $0 / $1 }, cpuRatios = zip(cpu[0], cpu[index]).map { $0 / $1 }
            print(String(format: "%@: wall median %.0f ms (%.0f tokens/s), speed-up over float32 per round median %.2f× (%.2f–%.2f×); "
                         + "CPU time median %.0f ms, ratio median %.2f× (%.2f–%.2f×)",
                         mode.name, median(wall[index]) * 1e3, Double(tokens) / median(wall[index]), median(ratios),
                         ratios.min()!, ratios.max()!, median(cpu[index]) * 1e3, median(cpuRatios), cpuRatios.min()!, cpuRatios.max()!))
            let key = mode.name.replacingOccurrences(of: " ", with: "_")
            json += [("\(key)_step_ms", median(wall[index]) * 1e3), ("\(key)_speedup", median(ratios)),
                     ("\(key)_cpu_ms", median(cpu[index]) * 1e3), ("\(key)_cpu_speedup", median(cpuRatios))]
        }
        print(jsonLine(json))
    }
}

/// The floating-point operations of one adapter-training step, counted analytically as torch's
/// flop counter counts them: 2·m·n·k per matrix product, attention as two full products forward
/// (scores and output, causal masks not discounted) and four backward; element-wise work is not counted.
/// A frozen linear layer costs one product backward (dX) when its input needs a gradient and none
/// when it does not; a trainable one costs two (dX, dW), except where its input needs no gradient.
struct MllamaTrainingFlops {
    var forward = 0.0, backward = 0.0
    var total: Double { forward + backward }

    init(preset: MllamaBenchPreset) {
        let config = preset.config, vision = config.visionConfig, llama = config.textConfig.llama
        let b = Double(preset.batch), t = Double(preset.tokens), images = b, tiles = Double(preset.tiles)
        let patches = Double((vision.imageSize / vision.patchSize) * (vision.imageSize / vision.patchSize))
        let l = patches + 1, lp = (l / 8).rounded(.up) * 8
        let e = Double(vision.hiddenSize), f = Double(vision.intermediateSize)

        /// Adds a linear layer `[m, k] → [m, n]`.
        func linear(_ m: Double, _ k: Double, _ n: Double, weightGrad: Bool, inputGrad: Bool) {
            let product = 2 * m * k * n
            forward += product
            backward += (weightGrad ? product : 0) + (inputGrad ? product : 0)
        }
        /// Adds attention over `heads` heads of width `dh`, `tq` queries × `tk` keys, `count` times.
        func attention(_ count: Double, heads: Double, tq: Double, tk: Double, dh: Double, needsGrad: Bool) {
            let product = 2 * count * heads * tq * tk * dh
            forward += 2 * product
            backward += needsGrad ? 4 * product : 0
        }

        // Vision encoder (trainable); the pixels need no gradient.
        linear(images * tiles * patches, Double(vision.numChannels * vision.patchSize * vision.patchSize), e,
               weightGrad: true, inputGrad: false)
        let visionTokens = images * tiles * lp
        for _ in 0..<(vision.numHiddenLayers + vision.numGlobalLayers) {
            for _ in 0..<4 { linear(visionTokens, e, e, weightGrad: true, inputGrad: true) }
            attention(images, heads: Double(vision.attentionHeads), tq: tiles * lp, tk: tiles * lp,
                      dh: e / Double(vision.attentionHeads), needsGrad: true)
            linear(visionTokens, e, f, weightGrad: true, inputGrad: true)
            linear(visionTokens, f, e, weightGrad: true, inputGrad: true)
        }
        // Projector (trainable).
        let imageTokens = images * tiles * l
        let d = Double(llama.hiddenSize), dh = Double(llama.headDim)
        let h = Double(llama.numAttentionHeads), kv = Double(llama.numKeyValueHeads), mlp = Double(llama.intermediateSize)
        linear(imageTokens, Double(vision.visionOutputDim), d, weightGrad: true, inputGrad: true)

        // Text layers: nothing before the first cross-attention layer needs a gradient.
        let textTokens = b * t
        let crossLayers = Set(config.textConfig.crossAttentionLayers)
        let firstCross = crossLayers.min() ?? llama.numHiddenLayers
        for index in 0..<llama.numHiddenLayers {
            let trainable = crossLayers.contains(index)
            let needsInputGrad = index > firstCross
            if trainable {
                linear(textTokens, d, h * dh, weightGrad: true, inputGrad: needsInputGrad)
                linear(imageTokens, d, kv * dh, weightGrad: true, inputGrad: true)
                linear(imageTokens, d, kv * dh, weightGrad: true, inputGrad: true)
                attention(b, heads: h, tq: t, tk: tiles * l, dh: dh, needsGrad: true)
                linear(textTokens, h * dh, d, weightGrad: true, inputGrad: true)
                for _ in 0..<2 { linear(textTokens, d, mlp, weightGrad: true, inputGrad: true) }
                linear(textTokens, mlp, d, weightGrad: true, inputGrad: true)
            } else {
                let grad = index > firstCross
                linear(textTokens, d, h * dh, weightGrad: false, inputGrad: grad)
                for _ in 0..<2 { linear(textTokens, d, kv * dh, weightGrad: false, inputGrad: grad) }
                attention(b, heads: h, tq: t, tk: t, dh: dh, needsGrad: grad)
                linear(textTokens, h * dh, d, weightGrad: false, inputGrad: grad)
                for _ in 0..<2 { linear(textTokens, d, mlp, weightGrad: false, inputGrad: grad) }
                linear(textTokens, mlp, d, weightGrad: false, inputGrad: grad)
            }
        }
        // lm_head (frozen; its input needs a gradient).
        linear(textTokens, d, Double(llama.vocabSize), weightGrad: false, inputGrad: true)
    }
}
