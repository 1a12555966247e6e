import Checkpoint
import Foundation
import Models
import Testing
import TensorCore
import Training
@testable import vlm
#if canImport(Glibc)
import Glibc
#endif

/// `mpirun`, when it is installed (Scripts/setup.sh installs it).
let mpirun: URL? = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].map(URL.init(fileURLWithPath:))
    .first { FileManager.default.isExecutableFile(atPath: $0.path) }
let mpirunNote = Comment(rawValue: "mpirun is not installed (Scripts/setup.sh installs Open MPI): the data-parallel tests are skipped")

/// `vlm train` over MPI on this host, as a separate process tree: the release binary (build it first).
enum ParallelTraining {
    static let binary = builtVLM

    /// One stage of 20 caption steps, global batch 8 (4 micro-batches of 2), a checkpoint every 2 steps.
    static func recipe(in scratch: Scratch, name: String = "recipe.yaml", learningRate: String = "0.003", extra: String = "") throws -> String {
        let text = """
            defaults:
              trainable: [visionModel, projector, crossAttentionLayers, extraEmbeddingRows]
              micro_batch_size: 2
              gradient_accumulation: 4
              max_length: 320
              learning_rate: \(learningRate)
              warmup_steps: 2
              checkpoint_every: 2
            stages:
              - name: pretrain
                kind: pretrain
                datasets: [pretrain-hq.jsonl, {path: pretrain-noisy.jsonl, weight: 0.5}]
                steps: 20\(extra)
            """
        try text.write(toFile: scratch.path(name), atomically: true, encoding: .utf8)
        return scratch.path(name)
    }

    static func arguments(recipe: String, run: String, dataRoot: String = TinyVisionSetup.world.path) -> [String] {
        ["train", recipe, "--base", vision.path, "--out", run, "--data-root", dataRoot]
    }

    /// The tiny vision model with its cross-attention gates open (`gate_init: 0.5`). At Meta's 0 the
    /// first steps' only gradients are the gates', sums of nearly cancelling terms whose sign is
    /// decided by rounding; AdamW turns that sign into a full learning-rate step, so any change in
    /// the order of float additions (the ranks' split is one) moves the weights by ~1e-5 relative
    /// for reasons that have nothing to do with data parallelism.
    static let vision: URL = {
        let folder = TinyVisionSetup.folder
        let layout = folder.appendingPathComponent("world-open-gates.yaml")
        let text = (try! String(contentsOf: repositoryFile("adapters/world.yaml"), encoding: .utf8)) + "\ngate_init: 0.5\n"
        try! text.write(to: layout, atomically: true, encoding: .utf8)
        let output = folder.appendingPathComponent("vision-open-gates")
        try! runVLM(["adapters", "init", "--text-model", folder.appendingPathComponent("llama").path, "--adapter", layout.path,
                     "--out", output.path])
        return output
    }()

    /// A launched job and where its standard error goes.
    struct Job {
        let process: Process
        let errorFile: URL
        var errorText: String { (try? String(contentsOf: errorFile, encoding: .utf8)) ?? "" }
        func wait() -> Int32 { process.waitUntilExit(); return process.terminationStatus }
    }

    /// Starts `vlm` alone (`ranks` nil) or under `mpirun -np ranks` (or an MPMD command line of `programs`).
    static func launch(ranks: Int?, programs: [[String]], scratch: Scratch, environment extra: [String: String] = [:]) throws -> Job {
        let process = Process()
        var environment = ProcessInfo.processInfo.environment
        // One compute thread per process, alone or per rank: with the same thread count every GEMM
        // sums in the same order, so what differs is only the order of the gradient sums.
        environment["VLMKIT_NUM_THREADS"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        for (key, value) in extra { environment[key] = value }
        process.environment = environment
        if let ranks, let mpirun {
            process.executableURL = mpirun
            var arguments = ["--oversubscribe", "--bind-to", "none"]
            for (index, program) in programs.enumerated() {
                if index > 0 { arguments.append(":") }
                arguments += ["-np", "\(programs.count == 1 ? ranks : 1)", binary.path] + program
            }
            process.arguments = arguments
        } else {
            process.executableURL = binary
            process.arguments = programs[0]
        }
        let errorFile = scratch.url.appendingPathComponent("stderr-\(UUID().uuidString).txt")
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: errorFile)
        try process.run()
        return Job(process: process, errorFile: errorFile)
    }

    /// The float32 tensors of a safetensors file.
    static func tensors(_ path: String) throws -> [String: [Float]] {
        let file = try SafetensorsCheckpoint(path: path)
        var result: [String: [Float]] = [:]
        for name in file.names { result[name] = try file.tensor(name).floats() }
        return result
    }

    /// ‖a − b‖ / ‖b‖ over all the tensors together (∞ when the names differ). Per tensor it is
    /// larger where AdamW's m / √v turns a rounding difference of a near-zero gradient into a
    /// visible step (a 32 × 32 projection differs by 9e-7 after 20 steps where the model as a whole
    /// differs by 9e-8).
    static func relativeDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> Double {
        guard Set(a.keys) == Set(b.keys) else { return .infinity }
        var difference = 0.0, norm = 0.0
        for name in a.keys {
            for (x, y) in zip(a[name]!, b[name]!) { difference += Double(x - y) * Double(x - y); norm += Double(y) * Double(y) }
        }
        return norm == 0 ? (difference == 0 ? 0 : .infinity) : (difference / norm).squareRoot()
    }

    /// The processes `mpirun` started for `job`, by rank (read from their environment).
    static func rankPIDs(of job: Job) -> [Int: Int32] {
        var result: [Int: Int32] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, Int32(fields[1]) == job.process.processIdentifier,
                  let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
            for variable in environ.split(separator: 0) {
                let text = String(decoding: variable, as: UTF8.self)
                if text.hasPrefix("OMPI_COMM_WORLD_RANK="), let rank = Int(text.dropFirst("OMPI_COMM_WORLD_RANK=".count)) { result[rank] = pid }
            }
        }
        return result
    }
}

@Suite("vlm train over MPI: data-parallel ranks", .serialized, .enabled(if: mpirun != nil, mpirunNote))
struct DataParallelTrainTests {
    /// 2 ranks each run 2 of a step's 4 micro-batches and sum their gradients: after 20 AdamW steps
    /// the weights are those of one process accumulating the same 4 micro-batches, up to the
    /// order of float additions ((g0 + g2) + (g1 + g3) instead of ((g0 + g1) + g2) + g3).
    @Test("2 ranks give one process's weights (≤ 1e-6 relative after 20 steps), every rank bit-identical at every checkpoint")
    func twoRanksEqualOneProcess() throws {
        try #require(FileManager.default.isExecutableFile(atPath: ParallelTraining.binary.path), "build the release binary first")
        let scratch = try Scratch()
        // With held-out evaluation at the end, split across the ranks and reduced.
        let recipe = try ParallelTraining.recipe(in: scratch, extra: "\n    eval_datasets: [qa-heldout.jsonl]\n    eval_samples: 8")
        let single = try ParallelTraining.launch(ranks: nil, programs: [ParallelTraining.arguments(recipe: recipe, run: scratch.path("one"))],
                                                 scratch: scratch)
        #expect(single.wait() == 0, "\(single.errorText)")
        try FileManager.default.createDirectory(atPath: scratch.path("hashes"), withIntermediateDirectories: true)
        let parallel = try ParallelTraining.launch(ranks: 2, programs: [ParallelTraining.arguments(recipe: recipe, run: scratch.path("two"))],
                                                   scratch: scratch, environment: ["VLM_REPLICA_HASH_LOG": scratch.path("hashes")])
        #expect(parallel.wait() == 0, "\(parallel.errorText)")

        let one = try ParallelTraining.tensors(scratch.path("one/pretrain/model/model.safetensors"))
        let two = try ParallelTraining.tensors(scratch.path("two/pretrain/model/model.safetensors"))
        let difference = ParallelTraining.relativeDifference(two, one)
        #expect(difference <= 1e-6, "relative difference \(difference)")
        #expect(one.count > 10)

        let lines = try (0..<2).map { rank in
            try String(contentsOfFile: scratch.path("hashes/rank-\(rank).txt"), encoding: .utf8).split(separator: "\n")
        }
        #expect(lines[0].count == 11, "the start and 10 checkpoints were verified: \(lines[0])")
        #expect(lines[0] == lines[1], "every rank's weights hash the same at every checkpoint")
        #expect(Set(lines[0].map { $0.split(separator: " ")[2] }).count == 11, "the weights change from checkpoint to checkpoint")

        let metrics = try String(contentsOfFile: scratch.path("two/pretrain/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(metrics.count == 20)
        let record = try JSONSerialization.jsonObject(with: Data(metrics[0].utf8)) as! [String: Any]
        #expect(record["ranks"] as? Int == 2 && record["communication_s"] is Double && record["compute_s"] is Double && record["rank_wait_s"] is Double)
        #expect(!parallel.errorText.contains("rank 1"), "rank 1 stays quiet: \(parallel.errorText)")

        func evaluation(_ run: String) throws -> [String: Double] {
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch.path("\(run)/pretrain/summary.json"))))
            return (summary as! [String: Any])["evaluation"] as! [String: Double]
        }
        let (alone, split) = (try evaluation("one"), try evaluation("two"))
        #expect(alone.keys.sorted() == split.keys.sorted() && alone["samples"] == 8 && split["samples"] == 8)
        #expect(abs(alone["loss"]! - split["loss"]!) <= 1e-5 * alone["loss"]!, "held-out loss \(alone["loss"]!) vs \(split["loss"]!)")
        #expect(alone["exact_match"] == split["exact_match"])
    }

    /// `kill -9` of rank 1 after the fourth checkpoint: `mpirun` stops the job and `vlm` names the
    /// rank; the same command resumes from the last whole checkpoint and ends bit-identical to an
    /// uninterrupted 2-rank run. A copy of the interrupted run resumed by one process ends within
    /// float rounding of one process's uninterrupted run (another number of ranks adds the
    /// gradients in another order).
    @Test("a rank killed with SIGKILL stops the job naming the rank; the same command resumes to the same bits")
    func killedRankResumes() throws {
        try #require(FileManager.default.isExecutableFile(atPath: ParallelTraining.binary.path), "build the release binary first")
        let scratch = try Scratch()
        let recipe = try ParallelTraining.recipe(in: scratch)
        let twoRanks = { (run: String) in [ParallelTraining.arguments(recipe: recipe, run: scratch.path(run))] }
        let straight = try ParallelTraining.launch(ranks: 2, programs: twoRanks("straight"), scratch: scratch)
        #expect(straight.wait() == 0, "\(straight.errorText)")

        let killed = try ParallelTraining.launch(ranks: 2, programs: twoRanks("killed"), scratch: scratch)
        let checkpoints = URL(fileURLWithPath: scratch.path("killed/pretrain/checkpoints"))
        let deadline = Date().addingTimeInterval(600)
        while killed.process.isRunning && Date() < deadline
                && ((try? RunCheckpointFolders.newestStep(in: checkpoints)) ?? 0) < 8 { usleep(20_000) }
        let pids = ParallelTraining.rankPIDs(of: killed)
        try #require(pids[1] != nil, "rank 1's process: \(pids)")
        kill(pids[1]!, SIGKILL)
        let status = killed.wait()
        #expect(status != 0)
        #expect(killed.errorText.contains("rank 1 (pid"), "vlm names rank 1: \(killed.errorText)")
        let stoppedAt = try RunCheckpointFolders.newestStep(in: checkpoints)
        #expect(stoppedAt >= 8 && stoppedAt < 20, "stopped mid-run at a checkpoint (\(stoppedAt))")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("killed/pretrain/model")))
        try FileManager.default.copyItem(atPath: scratch.path("killed"), toPath: scratch.path("killed-one"))

        let resumed = try ParallelTraining.launch(ranks: 2, programs: twoRanks("killed"), scratch: scratch)
        #expect(resumed.wait() == 0, "\(resumed.errorText)")
        let expected = try Data(contentsOf: URL(fileURLWithPath: scratch.path("straight/pretrain/model/model.safetensors")))
        #expect(try Data(contentsOf: URL(fileURLWithPath: scratch.path("killed/pretrain/model/model.safetensors"))) == expected,
                "resumed with the same ranks: bit-identical")
        let metrics = try String(contentsOfFile: scratch.path("killed/pretrain/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(metrics.count == 20, "the metrics lines after the checkpoint were cut back: no step twice")

        // Resumed by one process instead of two, compared with one process's uninterrupted run.
        let alone = try ParallelTraining.launch(ranks: nil, programs: [ParallelTraining.arguments(recipe: recipe, run: scratch.path("killed-one"))],
                                                scratch: scratch)
        #expect(alone.wait() == 0, "\(alone.errorText)")
        let single = try ParallelTraining.launch(ranks: nil, programs: [ParallelTraining.arguments(recipe: recipe, run: scratch.path("one"))],
                                                 scratch: scratch)
        #expect(single.wait() == 0, "\(single.errorText)")
        let difference = ParallelTraining.relativeDifference(
            try ParallelTraining.tensors(scratch.path("killed-one/pretrain/model/model.safetensors")),
            try ParallelTraining.tensors(scratch.path("one/pretrain/model/model.safetensors")))
        #expect(difference <= 1e-6, "resumed with another number of ranks: relative difference \(difference)")
    }

    @Test("ranks that differ in their recipe, or cannot read their data, are named before any step")
    func mismatchIsNamed() throws {
        try #require(FileManager.default.isExecutableFile(atPath: ParallelTraining.binary.path), "build the release binary first")
        let scratch = try Scratch()
        let recipe = try ParallelTraining.recipe(in: scratch)
        let other = try ParallelTraining.recipe(in: scratch, name: "other.yaml", learningRate: "0.001")

        let settings = try ParallelTraining.launch(ranks: 2, programs: [
            ParallelTraining.arguments(recipe: recipe, run: scratch.path("a")), ParallelTraining.arguments(recipe: other, run: scratch.path("a"))],
            scratch: scratch)
        #expect(settings.wait() != 0)
        #expect(settings.errorText.contains("rank 1: settings differs from rank 0's"), "\(settings.errorText)")
        #expect(settings.errorText.contains("No step was taken"))
        #expect(!FileManager.default.fileExists(atPath: scratch.path("a/pretrain/checkpoints")), "no step, no checkpoint")

        // Rank 1's data root lacks one file.
        let partial = scratch.path("partial-world")
        try FileManager.default.copyItem(atPath: TinyVisionSetup.world.path, toPath: partial)
        try FileManager.default.removeItem(atPath: partial + "/pretrain-noisy.jsonl")
        let data = try ParallelTraining.launch(ranks: 2, programs: [
            ParallelTraining.arguments(recipe: recipe, run: scratch.path("b")),
            ParallelTraining.arguments(recipe: recipe, run: scratch.path("b"), dataRoot: partial)], scratch: scratch)
        #expect(data.wait() != 0)
        #expect(data.errorText.contains("rank 1") && data.errorText.contains("pretrain-noisy.jsonl"), "\(data.errorText)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("b/pretrain/checkpoints/step-00000001")), "no step taken")
    }

    /// The post-training stages over 2 ranks against 1 process with the same global batch (4
    /// micro-batches of 2 records): rejection sampling (from the base model, ranked by a fixed
    /// reward model, so both runs sample from the same weights) keeps the same answers — each batch
    /// of prompts is seeded by its index, whichever rank samples it — then fine-tunes on them; DPO
    /// with an EMA reference and the NLL term on its output; a reward model trained from the base
    /// model by a second recipe into the same run folders (chained after DPO it would start from
    /// weights that already differ by rounding, and the differences would add up). Open gates, as
    /// above: at Meta's gate 0 AdamW would turn rounding into full steps.
    @Test("rejection, DPO and reward stages on 2 ranks keep one process's answers and reach its weights (≤ 1e-6), ranks bit-identical")
    func postTrainingOnTwoRanks() throws {
        try #require(FileManager.default.isExecutableFile(atPath: ParallelTraining.binary.path), "build the release binary first")
        let scratch = try Scratch()
        // A reward model with a seeded head on the base model, outside the run.
        let rewardFolder = scratch.url.appendingPathComponent("reward-model")
        try FileManager.default.copyItem(at: ParallelTraining.vision, to: rewardFolder)
        let base = try MllamaForConditionalGeneration.load(directory: ParallelTraining.vision)
        try VisionRewardModel(model: base, seed: 11).save(to: rewardFolder)
        let recipe = scratch.path("post.yaml")
        try """
            defaults:
              trainable: [visionModel, projector, crossAttentionLayers, extraEmbeddingRows]
              micro_batch_size: 2
              gradient_accumulation: 4
              max_length: 200
              learning_rate: 0.003
              warmup_steps: 2
              checkpoint_every: 2
            stages:
              - name: rejection
                kind: rejection
                reward_model: \(rewardFolder.path)
                datasets: [qa-train.jsonl]
                eval_datasets: [qa-heldout.jsonl]
                eval_samples: 8
                eval_max_new_tokens: 6
                max_prompts: 12
                samples_per_prompt: 4
                prompts_per_batch: 4
                temperature: 1.0
                top_p: 0.95
                max_new_tokens: 8
                answer_check: none
                steps: 6
              - name: dpo
                kind: dpo
                datasets: [preferences.jsonl]
                eval_datasets: [preferences-heldout.jsonl, qa-heldout.jsonl]
                eval_samples: 8
                eval_max_new_tokens: 6
                learning_rate: 0.001
                dpo_nll_weight: 0.2
                reference_ema_every: 3
                reference_ema_alpha: 0.6
                steps: 8
            """.write(toFile: recipe, atomically: true, encoding: .utf8)
        let rewardRecipe = scratch.path("reward.yaml")
        try """
            defaults:
              micro_batch_size: 2
              gradient_accumulation: 4
              max_length: 200
              learning_rate: 0.003
              warmup_steps: 2
              checkpoint_every: 2
            stages:
              - name: reward
                kind: reward
                datasets: [preferences.jsonl]
                eval_datasets: [preferences-heldout.jsonl]
                eval_samples: 8
                trainable: [visionModel, crossAttentionLayers, rewardHead]
                center_rewards_coefficient: 0.01
                steps: 8
            """.write(toFile: rewardRecipe, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: scratch.path("hashes"), withIntermediateDirectories: true)
        for file in [recipe, rewardRecipe] {
            let single = try ParallelTraining.launch(ranks: nil, programs: [ParallelTraining.arguments(recipe: file, run: scratch.path("one"))],
                                                     scratch: scratch)
            #expect(single.wait() == 0, "\(single.errorText)")
            let parallel = try ParallelTraining.launch(ranks: 2, programs: [ParallelTraining.arguments(recipe: file, run: scratch.path("two"))],
                                                       scratch: scratch, environment: ["VLM_REPLICA_HASH_LOG": scratch.path("hashes")])
            #expect(parallel.wait() == 0, "\(parallel.errorText)")
            #expect(!parallel.errorText.contains("rank 1"), "rank 1 stays quiet: \(parallel.errorText)")
        }

        // Rejection sampling: 3 batches of prompts over 2 ranks (one rank samples 2), the same kept set.
        let kept = try String(contentsOfFile: scratch.path("one/rejection/kept.jsonl"), encoding: .utf8)
        #expect(kept.split(separator: "\n").count == 12)
        #expect(try String(contentsOfFile: scratch.path("two/rejection/kept.jsonl"), encoding: .utf8) == kept, "2 ranks keep one process's answers")
        let batches = try FileManager.default.contentsOfDirectory(atPath: scratch.path("two/rejection/candidates")).filter { $0.hasPrefix("batch-") }
        #expect(batches.count == 3, "rank 0 wrote every batch: \(batches)")

        for (stage, files) in [("rejection", ["model.safetensors"]), ("dpo", ["model.safetensors"]),
                               ("reward", ["model.safetensors", VisionRewardModel.headFileName])] {
            for file in files {
                let difference = ParallelTraining.relativeDifference(try ParallelTraining.tensors(scratch.path("two/\(stage)/model/\(file)")),
                                                                     try ParallelTraining.tensors(scratch.path("one/\(stage)/model/\(file)")))
                #expect(difference <= 1e-6, "\(stage)/\(file): relative difference \(difference)")
            }
            let metrics = try String(contentsOfFile: scratch.path("two/\(stage)/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
                .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }.filter { $0["event"] == nil }
            #expect(metrics.count == (stage == "rejection" ? 6 : 8) && metrics.allSatisfy { $0["ranks"] as? Int == 2 && $0["communication_s"] is Double })
        }
        // TRL's figures cover the whole step (both ranks' micro-batches), as in one process.
        func firstLine(_ run: String, _ stage: String) throws -> [String: Any] {
            let line = try String(contentsOfFile: scratch.path("\(run)/\(stage)/metrics.jsonl"), encoding: .utf8).split(separator: "\n")[0]
            return try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        }
        for (stage, key) in [("dpo", "rewards/accuracies"), ("reward", "accuracy")] {
            let (a, b) = (try firstLine("one", stage)[key] as! Double, try firstLine("two", stage)[key] as! Double)
            #expect(a == b, "\(stage) \(key): \(a) vs \(b)")
        }
        // Evaluation split and reduced: the same held-out figures.
        func evaluation(_ run: String, _ stage: String) throws -> [String: Double] {
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch.path("\(run)/\(stage)/summary.json"))))
            return (summary as! [String: Any])["evaluation"] as! [String: Double]
        }
        for stage in ["rejection", "dpo", "reward"] {
            let (alone, split) = (try evaluation("one", stage), try evaluation("two", stage))
            #expect(alone.keys.sorted() == split.keys.sorted(), "\(stage): \(alone.keys.sorted()) vs \(split.keys.sorted())")
            for (key, value) in alone where !key.hasPrefix("sampling/candidates_per_s") && !key.hasPrefix("sampling/tokens_per_s") {
                #expect(abs(value - split[key]!) <= 1e-4 * max(1, abs(value)), "\(stage) \(key): \(value) vs \(split[key]!)")
            }
        }
        let lines = try (0..<2).map { rank in
            try String(contentsOfFile: scratch.path("hashes/rank-\(rank).txt"), encoding: .utf8).split(separator: "\n")
        }
        #expect(lines[0].count == 4 + 5 + 5, "each stage's start and checkpoints were verified: \(lines[0])")
        #expect(lines[0] == lines[1], "every rank's weights (and the EMA reference) hash the same at every checkpoint")
    }
}

/// Run checkpoint folders (`step-NNNNNNNN`) of a stage.
enum RunCheckpointFolders {
    static func newestStep(in folder: URL) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: folder.path)
            .compactMap { $0.hasPrefix("step-") ? Int($0.dropFirst(5)) : nil }.max() ?? 0
    }
}
