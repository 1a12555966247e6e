import Foundation
import Checkpoint
import Layers
import Models
import Testing
import TensorCore
@testable import Training
import _TestSupport

/// A tiny Mllama (text width 16, vocabulary 24, one cross-attention layer, 28-pixel tiles).
func tinyTrainingModel(seed: UInt64 = 1) -> MllamaForConditionalGeneration {
    let llama = LlamaConfig(vocabSize: 24, hiddenSize: 16, intermediateSize: 24, numHiddenLayers: 3,
                            numAttentionHeads: 4, numKeyValueHeads: 2, rmsNormEps: 1e-5)
    let vision = MllamaVisionConfig(hiddenSize: 8, numHiddenLayers: 2, numGlobalLayers: 1, attentionHeads: 2,
                                    intermediateSize: 12, imageSize: 28, patchSize: 14, maxNumTiles: 2,
                                    intermediateLayersIndices: [1], visionOutputDim: 16,
                                    supportedAspectRatios: [[1, 1], [1, 2], [2, 1]])
    let config = MllamaConfig(textConfig: MllamaTextConfig(llama: llama, crossAttentionLayers: [1]), visionConfig: vision,
                              imageTokenIndex: 24)
    let model = MllamaForConditionalGeneration(config: config, factory: ParameterFactory(.random(seed: seed, standardDeviation: 0.2)))
    // Open the gates a little so that every trainable part gets a gradient from the first step.
    for case let layer as MllamaCrossAttentionDecoderLayer in model.languageModel.model.layers {
        layer.attentionGate.floatPointer.pointee = 0.3
        layer.mlpGate.floatPointer.pointee = 0.2
    }
    return model
}

/// Samples of one image and a caption of 3–6 tokens, right-padded into a batch (labels: the caption).
func tinyBatch(samples: [Int], dtype: DType = .float32) -> TrainingBatch {
    let lengths = samples.map { 4 + $0 % 4 }
    let t = lengths.max()!
    var ids: [Int] = [], mask: [Int] = [], labels: [Int] = [], cross: [Int] = []
    for (sample, length) in zip(samples, lengths) {
        var generator = RandomGenerator(seed: UInt64(sample) + 100)
        let caption = (1..<length).map { _ in 1 + Int(generator.next() % 22) }
        let row = [24] + caption
        ids += row + Array(repeating: 0, count: t - length)
        mask += Array(repeating: 1, count: length) + Array(repeating: 0, count: t - length)
        labels += [-100] + caption + Array(repeating: -100, count: t - length)
        cross += (0..<t).flatMap { $0 < length ? [1, 0] : [0, 0] }
    }
    let b = samples.count
    var pixels = Tensor.concatenate(samples.map { randomFloats([1, 1, 2, 3, 28, 28], seed: UInt64($0) + 7) }, axis: 0)
    if dtype == .float64 { pixels = pixels.converted(to: .float64).detached() }
    let labelTensor = Tensor(indices: labels, shape: [b, t])
    let inputs = ModelInputs(inputIDs: Tensor(indices: ids, shape: [b, t]), attentionMask: Tensor(indices: mask, shape: [b, t]),
                             pixelValues: pixels, aspectRatioIDs: Tensor(indices: Array(repeating: 1, count: b), shape: [b, 1]),
                             aspectRatioMask: Tensor(indices: Array((0..<b).map { _ in [1, 0] }.joined()), shape: [b, 1, 2]),
                             crossAttentionMask: Tensor(indices: cross, shape: [b, t, 1, 2]))
    return TrainingBatch(inputs: inputs, labels: labelTensor, lossTokenCount: learnedTokenCount(labels: labelTensor),
                         sampleIDs: samples.map { "s\($0)" })
}

/// Micro-batches of `size` consecutive samples; the position is the next sample's index.
/// With `failAt`, reading that sample throws (a crash between checkpoints).
final class CountingStream: TrainingDataStream {
    var next: Int
    let size: Int
    let failAt: Int?
    let dtype: DType
    init(size: Int, from position: Data?, failAt: Int? = nil, dtype: DType = .float32) {
        self.size = size
        self.failAt = failAt
        self.dtype = dtype
        next = position.flatMap { try? JSONDecoder().decode(Int.self, from: $0) } ?? 0
    }
    struct Crash: Error {}
    func nextBatch() throws -> TrainingBatch {
        if let failAt, (next..<(next + size)).contains(failAt) { throw Crash() }
        defer { next += size }
        return tinyBatch(samples: Array(next..<(next + size)), dtype: dtype)
    }
    func savePosition() throws -> Data { try JSONEncoder().encode(next) }
    var samplesSeen: Int { next }
    var dataWaitSeconds: Double { 0 }
    var skipCounts: [String: Int] { [:] }
}

func temporaryFolder(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite("The trainer: accumulation, clipping, exact resume")
struct TrainerTests {
    func trainableWeights(_ model: Module) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: model.trainableParameters().map { ($0.name, $0.tensor.floats()) })
    }

    /// The loss of a step is Σ token losses / (learned tokens of the whole step), so splitting a
    /// batch into micro-batches (each padded to its own length) changes nothing but rounding. In
    /// float64, so that AdamW's m/√v — which turns a rounding difference of a near-zero gradient
    /// into a full-size step difference — does not hide the comparison.
    @Test("k accumulated micro-batches give the weights of one batch k times larger")
    func accumulationEqualsOneBatch() throws {
        func train(split: Bool) -> [String: [Double]] {
            let model = tinyTrainingModel()
            for (_, slot) in model.namedParameters() { slot.tensor = slot.tensor!.converted(to: .float64).detached() }
            model.setTrainable([.crossAttentionLayers, .projector, .visionModel])
            let stepper = TrainingStepper(model: model, optimizer: AdamW(module: model, learningRate: 1e-2), maxGradNorm: 1)
            for step in 0..<3 {
                let samples = Array((step * 4)..<(step * 4 + 4))
                let batches = split ? [tinyBatch(samples: Array(samples[0..<2]), dtype: .float64),
                                       tinyBatch(samples: Array(samples[2..<4]), dtype: .float64)]
                    : [tinyBatch(samples: samples, dtype: .float64)]
                #expect(stepper.step(batches, learningRate: 1e-2).isFinite)
            }
            return Dictionary(uniqueKeysWithValues: model.trainableParameters().map { ($0.name, $0.tensor.doubles()) })
        }
        let whole = train(split: false), accumulated = train(split: true)
        var worst = 0.0
        for (name, a) in whole {
            let b = accumulated[name]!
            let difference = zip(a, b).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
            let norm = a.map { $0 * $0 }.reduce(0, +).squareRoot()
            worst = max(worst, difference / max(norm, 1e-12))
        }
        #expect(worst <= 1e-6, "largest relative difference \(worst)")
        #expect(whole["multi_modal_projector.weight"] != tinyTrainingModel().projector.weight.doubles(), "training moved the weights")
    }

    /// Adam's first update moves every parameter by about its learning rate (m̂/√v̂ = ±1), so a
    /// factor of 10 shows as a 10× larger move.
    @Test("learning-rate multipliers scale the update of the parameters they name, by group or pattern")
    func learningRateMultipliers() throws {
        let model = tinyTrainingModel()
        model.setTrainable([.crossAttentionLayers, .projector])
        let optimizer = AdamW(module: model, learningRate: 1e-3, weightDecay: 0)
        optimizer.learningRateScales = try learningRateScales(["projector": 10, "**.cross_attn_attn_gate": 4], model: model,
                                                              parameters: optimizer.bindings.map(\.name))
        #expect(optimizer.learningRateScales["multi_modal_projector.weight"] == 10)
        #expect(optimizer.learningRateScales["language_model.model.layers.1.cross_attn_attn_gate"] == 4)
        #expect(optimizer.learningRateScales["language_model.model.layers.1.cross_attn.q_proj.weight"] == nil)
        let before = Dictionary(uniqueKeysWithValues: model.trainableParameters().map { ($0.name, $0.tensor.doubles()) })
        _ = TrainingStepper(model: model, optimizer: optimizer, maxGradNorm: 0).step([tinyBatch(samples: [0, 1])], learningRate: 1e-3)
        func largestMove(_ name: String) -> Double {
            let after = model.trainableParameters().first { $0.name == name }!.tensor.doubles()
            return zip(before[name]!, after).map { abs($0 - $1) }.max()!
        }
        #expect(abs(largestMove("multi_modal_projector.weight") - 1e-2) < 1e-4)
        #expect(abs(largestMove("language_model.model.layers.1.cross_attn_attn_gate") - 4e-3) < 1e-4)
        #expect(abs(largestMove("language_model.model.layers.1.cross_attn.q_proj.weight") - 1e-3) < 1e-5)
        #expect(throws: TrainingError.self) {
            try learningRateScales(["**.no_such_weight": 2], model: model, parameters: optimizer.bindings.map(\.name))
        }
    }

    @Test("a non-finite loss skips the update and is reported")
    func nonFiniteStepIsSkipped() throws {
        let model = tinyTrainingModel()
        model.setTrainable([.projector, .crossAttentionLayers])
        let stepper = TrainingStepper(model: model, optimizer: AdamW(module: model), maxGradNorm: 1)
        let before = trainableWeights(model)
        var batch = tinyBatch(samples: [0, 1])
        batch.inputs.pixelValues = batch.inputs.pixelValues! * Double.nan
        let report = stepper.step([batch], learningRate: 1e-2)
        #expect(!report.isFinite)
        #expect(report.sampleIDs == ["s0", "s1"])
        #expect(trainableWeights(model) == before)
        #expect(model.parameters().allSatisfy { $0.tensor.grad == nil })
    }

    func stage(steps: Int) -> StageSettings {
        var settings = StageSettings(name: "pretrain", kind: .pretrain)
        settings.datasets = [DatasetSpec(path: "unused")]
        settings.trainable = ["crossAttentionLayers", "projector", "visionModel"]
        settings.steps = steps
        settings.microBatchSize = 2
        settings.gradientAccumulation = 2
        settings.learningRate = 5e-3
        settings.warmupSteps = 2
        settings.checkpointEvery = 3
        return settings
    }

    func environment(_ model: MllamaForConditionalGeneration, failAt: Int? = nil) -> StageEnvironment {
        StageEnvironment(model: model, makeData: { settings, position in
                             CountingStream(size: settings.microBatchSize, from: position, failAt: failAt) },
                         trainingSampleCount: { _ in 100 }, evaluate: nil,
                         saveModel: { folder in try model.save(to: folder) }, textOnlyLogitsUnchanged: nil)
    }

    @Test("a stage stopped and started again ends bit-identical to an uninterrupted one")
    func resumeIsExact() throws {
        let settings = stage(steps: 8)
        let straightFolder = try temporaryFolder("straight")
        let straight = tinyTrainingModel()
        let summary = try StageRunner(settings: settings, folder: straightFolder, environment: environment(straight)).run()
        #expect(summary.steps == 8)
        let expected = trainableWeights(straight)

        // Stop at steps 4, 5 and 7 (each stop writes a checkpoint), then run to the end.
        let folder = try temporaryFolder("resumed")
        for stepsThisRun in [4, 1, 2] {
            let model = tinyTrainingModel()
            var steps = 0
            let runner = StageRunner(settings: settings, folder: folder, environment: environment(model),
                                     onEvent: { if case .step = $0 { steps += 1 } }, shouldStop: { steps >= stepsThisRun })
            #expect(throws: TrainingInterrupted.self) { _ = try runner.run() }
        }
        let model = tinyTrainingModel()
        _ = try StageRunner(settings: settings, folder: folder, environment: environment(model)).run()
        #expect(trainableWeights(model) == expected)
        let lines = try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 8, "one metrics line per step, none repeated: \(lines.count)")
        #expect(try RunCheckpoint.completeCheckpoints(in: folder.appendingPathComponent("checkpoints")).count == 1)
        let written = try MllamaForConditionalGeneration.load(directory: folder.appendingPathComponent("model"))
        #expect(written.projector.weight.floats() == model.projector.weight.floats())
    }

    @Test("with LoRA dropout, a stage stopped and started again still ends bit-identical to an uninterrupted one")
    func resumeWithLoRADropoutIsExact() throws {
        func settings(dropout: Double) -> StageSettings {
            var settings = stage(steps: 6)
            settings.languageModel = LanguageModelTraining(mode: .lora, lora: LoRAConfiguration(rank: 2, alpha: 4, dropout: dropout))
            return settings
        }
        func adaptedModel(_ settings: StageSettings) throws -> MllamaForConditionalGeneration {
            let model = tinyTrainingModel()
            try attachLanguageModelAdapters(to: model, stage: settings)
            return model
        }
        let dropout = settings(dropout: 0.5)
        let straight = try adaptedModel(dropout)
        _ = try StageRunner(settings: dropout, folder: try temporaryFolder("lora-straight"), environment: environment(straight)).run()
        let expected = trainableWeights(straight)
        #expect(expected.keys.contains { $0.hasSuffix("lora_A.weight") })

        let without = try adaptedModel(settings(dropout: 0))
        _ = try StageRunner(settings: settings(dropout: 0), folder: try temporaryFolder("lora-without"), environment: environment(without)).run()
        #expect(trainableWeights(without) != expected, "the dropout masks shape the run")

        let folder = try temporaryFolder("lora-resumed")
        for stepsThisRun in [2, 1] {
            var steps = 0
            let runner = StageRunner(settings: dropout, folder: folder, environment: environment(try adaptedModel(dropout)),
                                     onEvent: { if case .step = $0 { steps += 1 } }, shouldStop: { steps >= stepsThisRun })
            #expect(throws: TrainingInterrupted.self) { _ = try runner.run() }
        }
        let resumed = try adaptedModel(dropout)
        _ = try StageRunner(settings: dropout, folder: folder, environment: environment(resumed)).run()
        let identical = trainableWeights(resumed) == expected
        #expect(identical)
    }

    @Test("a run killed without a fresh checkpoint resumes from the last whole one and still ends identical")
    func resumeFromAnOlderCheckpoint() throws {
        let settings = stage(steps: 7)
        let reference = tinyTrainingModel()
        _ = try StageRunner(settings: settings, folder: try temporaryFolder("ref"), environment: environment(reference)).run()

        // A crash while reading step 5's data (sample 16 of 4 per step): the newest checkpoint is
        // step 3, metrics has lines past it, and a torn checkpoint folder of a dead writer lies around.
        let folder = try temporaryFolder("killed")
        #expect(throws: CountingStream.Crash.self) {
            _ = try StageRunner(settings: settings, folder: folder, environment: environment(tinyTrainingModel(), failAt: 16)).run()
        }
        let checkpoints = folder.appendingPathComponent("checkpoints")
        try FileManager.default.createDirectory(at: checkpoints.appendingPathComponent(".step-00000006.tmp-999999"), withIntermediateDirectories: true)
        #expect(try RunCheckpoint.latest(in: checkpoints)?.lastPathComponent == "step-00000003")
        let linesBefore = try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(linesBefore.count == 4)

        let model = tinyTrainingModel()
        _ = try StageRunner(settings: settings, folder: folder, environment: environment(model)).run()
        #expect(trainableWeights(model) == trainableWeights(reference))
        let lines = try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 7, "metrics lines past the checkpoint were dropped, not repeated")
        #expect(!FileManager.default.fileExists(atPath: checkpoints.appendingPathComponent(".step-00000006.tmp-999999").path),
                "the dead writer's temporary was removed")
    }
}
