import Collectives
import Foundation
import Layers
import Models
import Testing
import TensorCore
@testable import Training
import _TestSupport

/// Ranks as threads of one process, for testing data-parallel code without `mpirun`: each
/// collective waits for every rank, then sums (in rank order) or gathers what they passed.
final class ThreadRanks: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var arrived = 0, generation = 0
    private var slots: [[UInt8]]
    /// Collective calls per rank (to check how many messages a reduction sends).
    private(set) var calls: [Int]

    init(size: Int) {
        self.size = size
        slots = Array(repeating: [], count: size)
        calls = Array(repeating: 0, count: size)
    }

    func rank(_ index: Int) -> Rank { Rank(ranks: self, rank: index) }

    /// Every rank's bytes, once every rank has passed its own.
    func exchange(_ bytes: [UInt8], rank: Int) -> [[UInt8]] {
        condition.lock()
        defer { condition.unlock() }
        calls[rank] += 1
        slots[rank] = bytes
        let mine = generation
        arrived += 1
        if arrived == size { arrived = 0; generation += 1; condition.broadcast() } else { while generation == mine { condition.wait() } }
        let all = slots
        // Nobody may overwrite a slot before everyone has read this round.
        arrived += 1
        if arrived == size { arrived = 0; generation += 1; condition.broadcast() } else { while generation == mine + 1 { condition.wait() } }
        return all
    }

    final class Rank: ProcessGroup {
        let ranks: ThreadRanks
        let rank: Int
        var size: Int { ranks.size }
        init(ranks: ThreadRanks, rank: Int) { self.ranks = ranks; self.rank = rank }

        private func sum<T: BinaryFloatingPoint>(_ values: UnsafeMutableBufferPointer<T>) {
            let all = ranks.exchange(Array(UnsafeRawBufferPointer(values)), rank: rank)
            for index in values.indices {
                var total: T = 0
                for bytes in all { bytes.withUnsafeBytes { total += $0.load(fromByteOffset: index * MemoryLayout<T>.stride, as: T.self) } }
                values[index] = total
            }
        }
        func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws { sum(values) }
        func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws { sum(values) }
        func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) throws {
            let all = ranks.exchange(Array(UnsafeRawBufferPointer(bytes)), rank: rank)
            all[root].withUnsafeBytes { bytes.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<bytes.count])) }
        }
        func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] { ranks.exchange(bytes, rank: rank) }
        func barrier() throws { _ = ranks.exchange([], rank: rank) }
        func abort(status: Int32) -> Never { fatalError("abort(\(status))") }
    }

    /// Runs `body` for every rank on its own thread and returns the results in rank order.
    func run<T>(_ body: @escaping @Sendable (Rank) throws -> T) throws -> [T] {
        let results = UnsafeMutableBufferPointer<Result<T, Error>?>.allocate(capacity: size)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        let group = DispatchGroup()
        for index in 0..<size {
            let box = UncheckedBox(results)
            Thread {
                box.value[index] = Result { try body(self.rank(index)) }
                group.leave()
            }.start()
            group.enter()
        }
        group.wait()
        return try results.map { try $0!.get() }
    }
}

struct UncheckedBox<T>: @unchecked Sendable { let value: T; init(_ value: T) { self.value = value } }

@Suite("Data parallelism: split micro-batches, summed gradients")
struct DataParallelStepTests {
    func float64Model() -> MllamaForConditionalGeneration {
        let model = tinyTrainingModel()
        for (_, slot) in model.namedParameters() { slot.tensor = slot.tensor!.converted(to: .float64).detached() }
        model.setTrainable([.crossAttentionLayers, .projector, .visionModel])
        return model
    }

    func weights(_ model: Module) -> [String: [Double]] {
        Dictionary(uniqueKeysWithValues: model.trainableParameters().map { ($0.name, $0.tensor.doubles()) })
    }

    /// Three AdamW steps of 3 micro-batches each (uneven: rank 0 runs micro-batches 0 and 2, rank 1
    /// runs 1), gradients summed in buckets of 1 KiB (so small tensors share a bucket and large ones
    /// are cut in pieces): every rank ends with one process's weights, in float64 up to rounding
    /// (Σ over ranks adds in another order), and the ranks agree bit for bit.
    @Test("2 ranks sharing each step's micro-batches give one process's weights, and agree bit for bit")
    func twoRanksEqualOneProcess() throws {
        @Sendable func batches(_ step: Int) -> [TrainingBatch] {
            [tinyBatch(samples: [6 * step, 6 * step + 1], dtype: .float64), tinyBatch(samples: [6 * step + 2], dtype: .float64),
             tinyBatch(samples: [6 * step + 3, 6 * step + 4, 6 * step + 5], dtype: .float64)]
        }
        let model = float64Model()
        let stepper = TrainingStepper(model: model, optimizer: AdamW(module: model, learningRate: 1e-2), maxGradNorm: 1)
        var reports: [StepReport] = []
        for step in 0..<3 { reports.append(stepper.step(batches(step), learningRate: 1e-2)) }
        let alone = weights(model)

        let ranks = ThreadRanks(size: 2)
        let results = try ranks.run { rank -> ([String: [Double]], [StepReport]) in
            let model = self.float64Model()
            let stepper = TrainingStepper(model: model, optimizer: AdamW(module: model, learningRate: 1e-2), maxGradNorm: 1)
            let parallelism = DataParallelism(group: rank, bucketBytes: 1024)
            let reports = try (0..<3).map { try stepper.step(batches($0), learningRate: 1e-2, across: parallelism) }
            return (self.weights(model), reports)
        }
        #expect(results[0].0 == results[1].0, "the ranks' weights are bit-identical")
        var worst = 0.0
        for (name, a) in alone {
            let b = results[0].0[name]!
            let difference = zip(a, b).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
            worst = max(worst, difference / max(a.map { $0 * $0 }.reduce(0, +).squareRoot(), 1e-12))
        }
        #expect(worst <= 1e-9, "largest relative difference \(worst)")
        #expect(alone["multi_modal_projector.weight"] != float64Model().projector.weight.doubles(), "training moved the weights")
        for (one, split) in zip(reports, results[0].1) {
            #expect(abs(one.loss - split.loss) <= 1e-12 * abs(one.loss), "the step's loss is the whole step's")
            #expect(abs(one.gradientNorm - split.gradientNorm) <= 1e-9 * one.gradientNorm, "clipping sees the global norm")
            #expect(one.learnedTokens == split.learnedTokens && one.tokens == split.tokens)
        }
        #expect(ranks.calls[0] > 3 * 2, "gradients went in several buckets")
    }

    @Test("a non-finite loss on one rank skips the update on every rank")
    func nonFiniteOnOneRankSkipsEverywhere() throws {
        let ranks = ThreadRanks(size: 2)
        let results = try ranks.run { rank -> (Bool, Bool) in
            let model = self.float64Model()
            let stepper = TrainingStepper(model: model, optimizer: AdamW(module: model), maxGradNorm: 1)
            let before = self.weights(model)
            var poisoned = tinyBatch(samples: [1], dtype: .float64)
            poisoned.inputs.pixelValues = poisoned.inputs.pixelValues! * Double.nan
            let report = try stepper.step([tinyBatch(samples: [0], dtype: .float64), poisoned], learningRate: 1e-2,
                                          across: DataParallelism(group: rank))
            return (report.isFinite, self.weights(model) == before)
        }
        #expect(results.map(\.0) == [false, false])
        #expect(results.map(\.1) == [true, true], "no rank updated")
    }
}

@Suite("Data parallelism: checks between ranks, a stage on two ranks")
struct DataParallelStageTests {
    func settings(steps: Int) -> StageSettings {
        var settings = StageSettings(name: "pretrain", kind: .pretrain)
        settings.datasets = [DatasetSpec(path: "pairs.jsonl")]
        settings.trainable = ["crossAttentionLayers", "projector", "visionModel"]
        settings.steps = steps
        settings.microBatchSize = 2
        settings.gradientAccumulation = 2
        settings.learningRate = 5e-3
        settings.checkpointEvery = 2
        return settings
    }

    func environment(_ model: MllamaForConditionalGeneration) -> StageEnvironment {
        StageEnvironment(model: model, makeData: { settings, position in CountingStream(size: settings.microBatchSize, from: position) },
                         trainingSampleCount: { _ in 100 }, evaluate: nil,
                         saveModel: { folder in try model.save(to: folder) }, textOnlyLogitsUnchanged: nil)
    }

    @Test("the start-up check names the rank whose model weights differ, and the one whose data file is missing")
    func startupCheckNamesRanks() throws {
        let folder = try temporaryFolder("startup")
        try Data("{}\n".utf8).write(to: folder.appendingPathComponent("pairs.jsonl"))
        let recipe = try Recipe.parse(yaml: """
            stages:
              - {name: pretrain, kind: pretrain, datasets: [pairs.jsonl], trainable: [projector], steps: 1}
            """, file: "r.yaml", directory: folder)
        let stage = recipe.stages[0]
        let errors = try ThreadRanks(size: 3).run { rank -> String in
            var fingerprint = StartupCheck.fingerprint(stage: stage, recipe: recipe,
                                                       environment: .success(self.environment(tinyTrainingModel(seed: rank.rank == 1 ? 2 : 1))))
            if rank.rank == 2 { fingerprint["pretrain.datasets[0] pairs.jsonl"] = "failed: pairs.jsonl cannot be read" }
            do { try StartupCheck.verify(stage: stage, fingerprint: fingerprint, group: rank) } catch let error as DataParallelMismatch {
                return error.description
            }
            return "no error"
        }
        #expect(Set(errors).count == 1, "every rank stops with the same message")
        #expect(errors[0].contains("rank 1: model weights differs from rank 0's"), "\(errors[0])")
        #expect(!errors[0].contains("rank 1: model parameter names"), "the layout is the same: \(errors[0])")
        #expect(errors[0].contains("rank 2: pretrain.datasets[0] pairs.jsonl: pairs.jsonl cannot be read"), "\(errors[0])")
        #expect(!errors[0].contains("rank 2: model"))
    }

    @Test("the replica check names a rank whose trainable weights differ")
    func replicaCheckNamesRank() throws {
        let errors = try ThreadRanks(size: 2).run { rank -> String in
            let model = tinyTrainingModel()
            model.setTrainable([.projector])
            if rank.rank == 1 { model.projector.weight.floatPointer[5] += 1e-6 }
            do {
                try DataParallelism(group: rank).verifyReplicas(stage: "sft", step: 4, optimizer: AdamW(module: model))
            } catch let error as DataParallelMismatch { return error.description }
            return "no error"
        }
        #expect(errors[0] == errors[1])
        #expect(errors[0].hasPrefix("sft step 4: the trainable weights and optimiser state of rank 1 ("), "\(errors[0])")
    }

    /// The whole stage loop on two thread ranks sharing one folder: rank 0 alone writes the
    /// metrics and checkpoints, the ranks' weights stay identical, and they equal one process's
    /// within float rounding (float32 here: the gradient sums of 2 micro-batches are the same
    /// single addition, a + b = b + a, so the results are even bit-identical).
    @Test("a stage trained by 2 ranks writes once and ends with one process's weights")
    func stageOnTwoRanks() throws {
        let settings = settings(steps: 4)
        let alone = tinyTrainingModel()
        _ = try StageRunner(settings: settings, folder: try temporaryFolder("alone"), environment: environment(alone)).run()
        let expected = alone.trainableParameters().map { $0.tensor.floats() }

        let folder = try temporaryFolder("two-ranks")
        let hashes = try ThreadRanks(size: 2).run { rank -> [[Float]] in
            let model = tinyTrainingModel()
            let runner = StageRunner(settings: settings, folder: folder, environment: self.environment(model))
            runner.parallelism = DataParallelism(group: rank)
            _ = try runner.run()
            return model.trainableParameters().map { $0.tensor.floats() }
        }
        #expect(hashes[0] == hashes[1], "the ranks' weights are bit-identical")
        #expect(hashes[0] == expected, "2 ranks × 1 micro-batch = 1 process × 2 micro-batches, bit for bit")
        let lines = try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 4, "one line per step, written once")
        #expect(lines.allSatisfy { $0.contains("\"ranks\": 2") && $0.contains("\"communication_s\"") })
        #expect(try RunCheckpoint.latest(in: folder.appendingPathComponent("checkpoints"))?.lastPathComponent == "step-00000004")
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("model/model.safetensors").path))
    }

    /// LoRA dropout's masks are fixed by the step and the micro-batch's place in it, not by the
    /// rank that runs it, so the ranks draw the masks one process draws.
    @Test("with LoRA dropout, 2 ranks end with one process's weights")
    func loraDropoutOnTwoRanks() throws {
        var settings = settings(steps: 3)
        settings.languageModel = LanguageModelTraining(mode: .lora, lora: LoRAConfiguration(rank: 2, alpha: 4, dropout: 0.5))
        func model() throws -> MllamaForConditionalGeneration {
            let model = tinyTrainingModel()
            try attachLanguageModelAdapters(to: model, stage: settings)
            return model
        }
        let alone = try model()
        _ = try StageRunner(settings: settings, folder: try temporaryFolder("lora-alone"), environment: environment(alone)).run()
        let expected = alone.trainableParameters().map { $0.tensor.floats() }

        let folder = try temporaryFolder("lora-two-ranks")
        let weights = try ThreadRanks(size: 2).run { rank -> [[Float]] in
            let model = try model()
            let runner = StageRunner(settings: settings, folder: folder, environment: self.environment(model))
            runner.parallelism = DataParallelism(group: rank)
            _ = try runner.run()
            return model.trainableParameters().map { $0.tensor.floats() }
        }
        #expect(weights[0] == weights[1] && weights[0] == expected)
    }
}
