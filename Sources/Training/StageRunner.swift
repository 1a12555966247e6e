import Checkpoint
import Foundation
import Layers
import Models
import TensorCore

/// Supplies a stage's training micro-batches in an order fixed by the seed, and says where it is
/// so that a resumed run reads exactly what an uninterrupted one would.
public protocol TrainingDataStream: AnyObject {
    /// The next micro-batch (epochs follow one another).
    func nextBatch() throws -> TrainingBatch
    /// The position after the last batch returned, as JSON.
    func savePosition() throws -> Data
    /// Samples returned so far.
    var samplesSeen: Int { get }
    /// Seconds the consumer has waited for batches so far.
    var dataWaitSeconds: Double { get }
    /// Samples skipped so far, by cause.
    var skipCounts: [String: Int] { get }
}

/// What a stage runs on: the model, its data, and how to evaluate and save it.
public struct StageEnvironment {
    public var model: any TrainableLanguageModel
    /// Training data for the stage, optionally resumed from a saved position.
    public var makeData: (StageSettings, _ resumeFrom: Data?) throws -> any TrainingDataStream
    /// The number of training samples (for `epochs`).
    public var trainingSampleCount: (StageSettings) throws -> Int
    /// Held-out metrics of the current model (nil: the stage has no evaluation data).
    public var evaluate: ((StageSettings) throws -> [String: Double])?
    /// Writes the stage's output model into a folder (weights, config, tokenizer files).
    public var saveModel: (URL) throws -> Void
    /// Whether the model's text-only logits still equal the base model's, bit for bit (nil: not checked).
    public var textOnlyLogitsUnchanged: (() throws -> Bool)?
    /// The step of a stage whose loss is not causal-LM cross-entropy (reward, DPO); nil: ``TrainingStepper``.
    public var makeStepper: ((AdamW) throws -> any StageStepping)? = nil
    /// Work before the stage's first step that builds its training data (rejection sampling, on-policy
    /// pairs). It runs at the start of ``StageRunner/run()``, after the ranks of a data-parallel job
    /// checked that they agree, since it may exchange data with them.
    public var prepare: (() throws -> Void)? = nil

    public init(model: any TrainableLanguageModel,
                makeData: @escaping (StageSettings, Data?) throws -> any TrainingDataStream,
                trainingSampleCount: @escaping (StageSettings) throws -> Int,
                evaluate: ((StageSettings) throws -> [String: Double])?, saveModel: @escaping (URL) throws -> Void,
                textOnlyLogitsUnchanged: (() throws -> Bool)?) {
        self.model = model
        self.makeData = makeData
        self.trainingSampleCount = trainingSampleCount
        self.evaluate = evaluate
        self.saveModel = saveModel
        self.textOnlyLogitsUnchanged = textOnlyLogitsUnchanged
    }
}

/// The training loop of one stage. It does not know which stage it runs: the kind decided the
/// data's loss masks; here every stage is next-token cross-entropy over the learned positions.
///
/// A stage's folder holds `metrics.jsonl`, `checkpoints/step-N/` (the newest whole one),
/// `summary.json` and `model/` (the output checkpoint in the published Hugging Face layout).
/// Started again after an interruption, it resumes from the newest checkpoint whose settings
/// digest matches and finishes bit-identical to an uninterrupted run.
public final class StageRunner {
    public let settings: StageSettings
    public let folder: URL
    public let environment: StageEnvironment
    public var onEvent: (TrainingEvent) -> Void
    /// Polled between steps; when it returns true the stage writes a checkpoint and throws ``TrainingInterrupted``.
    public var shouldStop: () -> Bool
    /// The ranks this stage trains over (nil: this process alone). Only rank 0 writes files.
    public var parallelism: DataParallelism?

    public init(settings: StageSettings, folder: URL, environment: StageEnvironment,
                onEvent: @escaping (TrainingEvent) -> Void = { _ in }, shouldStop: @escaping () -> Bool = { false }) {
        self.settings = settings
        self.folder = folder
        self.environment = environment
        self.onEvent = onEvent
        self.shouldStop = shouldStop
    }

    /// Mixed into LoRA dropout's seeds so that they differ from the data order's.
    static let dropoutPurpose: UInt64 = 0x6C6F_7261_6472_6F70   // "loradrop"

    public var checkpointsFolder: URL { folder.appendingPathComponent("checkpoints") }
    public var outputFolder: URL { folder.appendingPathComponent("model") }

    /// Trains the stage to its last step, evaluates, and writes the output model and summary.
    public func run() throws -> StageSummary {
        // Before anything is written: a bf16 stage on a CPU without AVX512-BF16 is refused, not run slowly.
        if let reason = settings.precision?.unsupportedReason() { throw TrainingError("\(settings.name): \(reason)") }
        let model = environment.model
        let writer = parallelism?.isWriter ?? true
        if writer {
            try FileManager.default.createDirectory(at: checkpointsFolder, withIntermediateDirectories: true)
            DirectoryCommit.removeStaleTemporaries(in: folder)
            DirectoryCommit.removeStaleTemporaries(in: checkpointsFolder)
        }
        try parallelism?.group.barrier()
        try environment.prepare?()
        try makeTrainable(model, groups: settings.trainingGroups)
        let optimizer = AdamW(module: model, learningRate: settings.learningRate, betas: (settings.beta1, settings.beta2),
                              epsilon: settings.epsilon, weightDecay: settings.weightDecay)
        optimizer.learningRateScales = try learningRateScales(settings.learningRateMultipliers, model: model,
                                                              parameters: optimizer.bindings.map(\.name))
        model.setActivationCheckpointing(settings.activationCheckpointing)
        // One scope for the whole stage: frozen weights are rounded and packed once, then reused every step.
        let mixedPrecision = settings.precision == .bf16 ? BFloat16Linear() : nil
        func inPrecision<Result>(_ body: () throws -> Result) rethrows -> Result {
            try mixedPrecision.map { try $0.run(body) } ?? body()
        }
        let stepper: any StageStepping = try environment.makeStepper?(optimizer)
            ?? TrainingStepper(model: model, optimizer: optimizer, maxGradNorm: settings.maxGradNorm)
        let totalSteps = settings.totalSteps(trainingSamples: settings.steps > 0 ? 0 : try environment.trainingSampleCount(settings))
        let schedule = makeSchedule(totalSteps: totalSteps)

        // Resume from the newest checkpoint of these settings; anything else in the folder is stale.
        var progress = RunProgress(step: 0, dataPosition: Data(), nonFiniteStreak: 0, metricsBytes: 0, elapsedSeconds: 0,
                                   optimizerStepCounts: [:], settingsDigest: settings.digest)
        var resumed: Int? = nil, stale = false
        if let latest = try RunCheckpoint.latest(in: checkpointsFolder) {
            let saved = try? JSONDecoder().decode(RunProgress.self, from: Data(contentsOf: latest.appendingPathComponent("progress.json")))
            if saved?.settingsDigest == settings.digest {
                progress = try RunCheckpoint.restore(latest, into: model, optimizer: optimizer)
                try stepper.restore(checkpointTensors: try RunCheckpoint.stageState(in: latest))
                resumed = progress.step
            } else {
                stale = true
            }
        }
        if let parallelism { try parallelism.verifyReplicas(stage: settings.name, step: progress.step, optimizer: optimizer, stageState: stepper.checkpointTensors()) }
        if stale && writer {
            try FileManager.default.removeItem(at: checkpointsFolder)
            try FileManager.default.createDirectory(at: checkpointsFolder, withIntermediateDirectories: true)
        }
        let metrics = writer ? try MetricsLog(url: folder.appendingPathComponent("metrics.jsonl"), keepingBytes: progress.metricsBytes) : nil
        let data = try environment.makeData(settings, resumed == nil ? nil : progress.dataPosition)
        onEvent(.stageStarted(stage: settings.name, kind: settings.kind, totalSteps: totalSteps, resumedAtStep: resumed))

        var firstLoss: Double? = nil, lastLoss: Double? = nil, skippedSteps = 0
        var tokens = 0, trainingSeconds = 0.0
        let waitAtStart = data.dataWaitSeconds
        var lastEvaluation: [String: Double] = [:]

        func checkpoint() throws {
            if let parallelism { try parallelism.verifyReplicas(stage: settings.name, step: progress.step, optimizer: optimizer, stageState: stepper.checkpointTensors()) }
            guard let metrics else { return }   // not the writer
            metrics.sync()
            progress.dataPosition = try data.savePosition()
            progress.metricsBytes = metrics.byteCount
            progress.optimizerStepCounts = optimizer.stepCounts
            try RunCheckpoint.save(in: checkpointsFolder, optimizer: optimizer, progress: progress,
                                   stageState: stepper.checkpointTensors())
            onEvent(.checkpoint(stage: settings.name, step: progress.step))
        }

        let usesDropout = settings.languageModelTraining.mode == .lora && settings.languageModelTraining.lora.dropout > 0
        // The loop's full period per step (data, step, metrics, progress, checkpoints): what a user
        // waits for, compared with `vlm bench train`'s bare step in Docs/benchmarks.md.
        var previousStepEnd = Date()
        while progress.step < totalSteps {
            if try parallelism.map({ try $0.group.any(shouldStop()) }) ?? shouldStop() {
                try checkpoint()
                throw TrainingInterrupted(stage: settings.name, step: progress.step)
            }
            let started = Date()
            let waitBefore = data.dataWaitSeconds
            var batches: [TrainingBatch] = []
            for _ in 0..<settings.gradientAccumulation { batches.append(try data.nextBatch()) }
            if usesDropout {
                for index in batches.indices {
                    batches[index].dropoutSeed = DataOrder.derive(settings.seed, Self.dropoutPurpose, UInt64(progress.step), UInt64(index))
                }
            }
            let learningRate = schedule.learningRate(at: progress.step)
            let report: StepReport
            // Only LoRA's dropout reads the training flag; evaluation and saving see the model in inference mode.
            if usesDropout { model.train() }
            if let parallelism {
                report = try inPrecision { try stepper.step(batches, learningRate: learningRate, across: parallelism) }
            } else {
                report = inPrecision { stepper.step(batches, learningRate: learningRate) }
            }
            if usesDropout { model.eval() }
            progress.step += 1
            stepper.didFinishStep(progress.step)
            let seconds = Date().timeIntervalSince(started)
            progress.elapsedSeconds += seconds
            trainingSeconds += seconds
            tokens += report.tokens

            if report.isFinite {
                progress.nonFiniteStreak = 0
                if firstLoss == nil { firstLoss = report.loss }
                lastLoss = report.loss
            } else {
                skippedSteps += 1
                progress.nonFiniteStreak += 1
                onEvent(.warning("\(settings.name) step \(progress.step): non-finite loss or gradient (loss \(report.loss), gradient norm \(report.gradientNorm)); update skipped; samples \(report.sampleIDs.joined(separator: ", "))"))
                if progress.nonFiniteStreak >= settings.maxNonFiniteSteps {
                    throw TrainingError("\(settings.name): \(progress.nonFiniteStreak) steps in a row had a non-finite loss or gradient (last at step \(progress.step), samples \(report.sampleIDs.joined(separator: ", "))); stopping. The last checkpoint is kept in \(checkpointsFolder.path).")
                }
            }
            let wait = data.dataWaitSeconds - waitBefore
            let tokensPerSecond = Double(report.tokens) / max(seconds, 1e-9)
            let stepEnd = Date(), period = stepEnd.timeIntervalSince(previousStepEnd)
            previousStepEnd = stepEnd
            if progress.step % max(1, settings.logEvery) == 0 || progress.step == totalSteps {
                var record: [String: MetricValue] = [
                    "step": .integer(progress.step), "loss": .number(report.loss), "learning_rate": .number(learningRate),
                    "grad_norm": .number(report.gradientNorm), "tokens": .integer(report.tokens),
                    "learned_tokens": .integer(report.learnedTokens), "images": .integer(report.images),
                    "tokens_per_s": .number(tokensPerSecond), "images_per_s": .number(Double(report.images) / max(seconds, 1e-9)),
                    "data_wait_s": .number(wait), "skipped_step": .flag(!report.isFinite),
                    "step_s": .number(period),
                ]
                for (key, value) in stepper.lastStepMetrics { record[key] = .number(value) }
                if let parallelism { record.merge(parallelism.timing(of: report)) { $1 } }
                try metrics?.append(record)
            }
            onEvent(.step(stage: settings.name, step: progress.step, totalSteps: totalSteps, report: report,
                          tokensPerSecond: tokensPerSecond, dataWaitSeconds: wait, elapsedSeconds: progress.elapsedSeconds))

            if settings.evalEvery > 0, progress.step % settings.evalEvery == 0, progress.step < totalSteps,
               let evaluate = environment.evaluate {
                lastEvaluation = try evaluate(settings)
                try metrics?.append(evaluationRecord(lastEvaluation, step: progress.step))
                onEvent(.evaluation(stage: settings.name, step: progress.step, metrics: lastEvaluation))
            }
            if progress.step % max(1, settings.checkpointEvery) == 0 || progress.step == totalSteps { try checkpoint() }
        }
        let noCheckpoint = writer ? try RunCheckpoint.latest(in: checkpointsFolder) == nil : false
        if try parallelism.map({ try $0.group.any(noCheckpoint) }) ?? noCheckpoint { try checkpoint() }   // a zero-step stage

        if let evaluate = environment.evaluate {
            lastEvaluation = try evaluate(settings)
            onEvent(.evaluation(stage: settings.name, step: progress.step, metrics: lastEvaluation))
        }
        let unchanged = writer ? try environment.textOnlyLogitsUnchanged?() : nil
        if writer { try DirectoryCommit.write(outputFolder) { try environment.saveModel($0) } }
        let summary = StageSummary(
            stage: settings.name, kind: settings.kind, steps: progress.step, samples: data.samplesSeen,
            firstLoss: firstLoss, finalLoss: lastLoss, skippedSteps: skippedSteps, skippedSamples: data.skipCounts,
            trainableParameters: optimizer.parameters.reduce(0) { $0 + $1.tensor.elementCount },
            seconds: progress.elapsedSeconds, tokensPerSecond: Double(tokens) / max(trainingSeconds, 1e-9),
            dataWaitSeconds: data.dataWaitSeconds - waitAtStart, evaluation: lastEvaluation,
            textOnlyLogitsUnchanged: unchanged, output: outputFolder.path)
        if writer {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try encoder.encode(summary), to: folder.appendingPathComponent("summary.json"))
        }
        try parallelism?.group.barrier()   // the next stage reads this one's output
        onEvent(.stageFinished(summary))
        return summary
    }

    private func evaluationRecord(_ metrics: [String: Double], step: Int) -> [String: MetricValue] {
        var record: [String: MetricValue] = ["step": .integer(step), "event": "evaluation"]
        for (key, value) in metrics { record["eval_" + key] = .number(value) }
        return record
    }

    private func makeSchedule(totalSteps: Int) -> LearningRateSchedule {
        let peak = settings.learningRate, warmup = settings.warmupSteps
        switch settings.schedule {
        case .constant: return warmup > 0 ? .constantWithWarmup(peak: peak, warmupSteps: warmup) : .constant(peak: peak)
        case .linear: return .linear(peak: peak, warmupSteps: warmup, totalSteps: totalSteps)
        case .cosine: return .cosine(peak: peak, warmupSteps: warmup, totalSteps: totalSteps, minimum: peak * settings.minLearningRateRatio)
        }
    }
}

/// Makes the named parameter groups of `model` trainable (everything else frozen).
/// - Throws: ``TrainingError`` naming an unknown group and listing the model's groups.
@discardableResult
public func makeTrainable(_ model: any TrainableLanguageModel, groups: [String]) throws -> [String] {
    var patterns: [String] = []
    for group in groups {
        if group == LanguageModelTraining.adapterGroup {
            patterns += LanguageModelTraining.adapterPatterns
            continue
        }
        guard let groupPatterns = model.parameterPatterns(forGroup: group) else {
            throw TrainingError("'\(group)' is not a parameter group of this model; groups: \(model.parameterGroupNames.joined(separator: ", "))")
        }
        patterns += groupPatterns
    }
    let names = model.makeTrainable(matching: patterns)
    guard !names.isEmpty else { throw TrainingError("the trainable groups \(groups) select no parameters") }
    return names
}

/// Each trainable parameter's learning-rate factor from a recipe's `learning_rate_multipliers`
/// (keys: group names or name patterns; the first matching key in sorted order wins).
func learningRateScales(_ multipliers: [String: Double], model: any TrainableLanguageModel,
                        parameters: [String]) throws -> [String: Double] {
    var scales: [String: Double] = [:]
    for key in multipliers.keys.sorted() {
        let patterns = (model.parameterPatterns(forGroup: key) ?? [key]).map(NamePattern.init)
        let matched = parameters.filter { name in patterns.contains { $0.matches(name) } }
        guard !matched.isEmpty else {
            throw TrainingError("learning_rate_multipliers: '\(key)' matches no trainable parameter "
                                + "(groups: \(model.parameterGroupNames.joined(separator: ", ")), or a name pattern such as **.cross_attn_attn_gate)")
        }
        for name in matched where scales[name] == nil { scales[name] = multipliers[key] }
    }
    return scales
}

/// A stage stopped on request (Ctrl-C) after writing a checkpoint; the same command resumes it.
public struct TrainingInterrupted: Error, CustomStringConvertible {
    public var stage: String
    public var step: Int
    public var description: String { "interrupted in stage \(stage) at step \(step); a checkpoint was written — run the same command to resume" }
}
