import Checkpoint
import Dispatch
import Foundation
import Models
import Testing
import TensorCore
import Training
import _TestSupport
@testable import vlm
#if canImport(Glibc)
import Glibc
#endif

/// `pipelines/post-training-tiny.yaml` on the tiny world: SFT, a reward model, rejection sampling
/// ranked by it, DPO.
@Suite("vlm train: post-training stages end to end", .serialized)
struct PostTrainingCommandTests {
    static let recipe = repositoryFile("pipelines/post-training-tiny.yaml").path
    /// The tiny SFT model answers almost nothing right, so the test keeps candidates by reward alone.
    static let overrides = ["rejection.answer_check=none", "dpo-on-policy.answer_check=none"]

    func summary(_ run: URL, _ stage: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("\(stage)/summary.json"))) as! [String: Any]
    }

    func metricLines(_ run: URL, _ stage: String) throws -> [[String: Any]] {
        try String(contentsOf: run.appendingPathComponent("\(stage)/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    func pipeline(_ run: URL) throws -> Pipeline {
        let recipe = try Recipe.load(from: URL(fileURLWithPath: Self.recipe), overrides: Self.overrides, dataRoot: TinyVisionSetup.world)
        return Pipeline(recipe: recipe, base: TinyVisionSetup.vision, runFolder: run) { stage, input in
            try TrainingEnvironment.make(stage: stage, recipe: recipe, input: input, base: TinyVisionSetup.vision, runFolder: run)
        }
    }

    @Test("reward, rejection and dpo stages run, report TRL's figures, keep the text model's logits, and resume to the same bits")
    func postTrainingRun() throws {
        let scratch = try Scratch()
        let run = URL(fileURLWithPath: scratch.path("run"))
        try runVLM(["train", Self.recipe, "--base", TinyVisionSetup.vision.path, "--out", run.path, "--data-root", TinyVisionSetup.world.path,
                    "--set", Self.overrides[0], "--set", Self.overrides[1]])

        for stage in ["sft", "reward", "rejection", "dpo", "dpo-on-policy"] {
            #expect(try summary(run, stage)["textOnlyLogitsUnchanged"] as? Bool == true, "\(stage): the drop-in still holds")
            _ = try MllamaForConditionalGeneration.load(directory: run.appendingPathComponent("\(stage)/model"))
        }
        // The reward model: a Mllama folder plus its head; every step logs TRL's RewardTrainer figures.
        let rewardModel = try VisionRewardModel.load(directory: run.appendingPathComponent("reward/model"))
        #expect(rewardModel.score.weight.shape == [1, 32])
        let rewardLines = try metricLines(run, "reward").filter { $0["event"] == nil }
        #expect(rewardLines.count == 12 && rewardLines.allSatisfy { $0["accuracy"] is Double && $0["margin"] is Double })
        let rewardEvaluation = try summary(run, "reward")["evaluation"] as! [String: Double]
        #expect(rewardEvaluation["accuracy"] != nil && rewardEvaluation["accuracy_blank_images"] != nil)

        // Rejection sampling: 16 prompts × 4 candidates, kept answers written as a dataset, then SFT on them.
        let sampling = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("rejection/sampling.json"))) as! [String: Double]
        #expect(sampling["sampling/candidates"] == 64)
        let kept = try String(contentsOf: run.appendingPathComponent("rejection/kept.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(Double(kept.count) == sampling["sampling/kept"] && kept.count == 16, "one answer kept per prompt")
        #expect(sampling["sampling/acceptance_rate"]! == Double(kept.count) / 64)
        if kept.count > 0 { #expect(sampling["sampling/mean_reward_kept"]! >= sampling["sampling/mean_reward_all"]!) }
        #expect(sampling["sampling/candidates_per_s"]! > 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("rejection/candidates").path)
                .filter { $0.hasPrefix("batch-") }.count == 4)
        let rejectionEvaluation = try summary(run, "rejection")["evaluation"] as! [String: Double]
        #expect(rejectionEvaluation["exact_match"] != nil && rejectionEvaluation["sampling/kept"] == Double(kept.count))

        // DPO: TRL's DPOTrainer figures per step; held-out preference figures and exact match.
        let dpoLines = try metricLines(run, "dpo").filter { $0["event"] == nil }
        #expect(dpoLines.count == 8)
        for key in ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "log_ratio"] {
            #expect(dpoLines.allSatisfy { $0[key] is Double }, "\(key) in every DPO metrics line")
        }
        let dpoEvaluation = try summary(run, "dpo")["evaluation"] as! [String: Double]
        #expect(dpoEvaluation["preference/rewards/accuracies"] != nil && dpoEvaluation["exact_match"] != nil)
        // The policy stays near the reference on the held-out pairs (|mean log-ratio| per response).
        #expect(abs(dpoEvaluation["preference/log_ratio"]!) < 5, "\(dpoEvaluation)")
        // The EMA reference is part of the run checkpoint.
        let checkpoint = try RunCheckpoint.latest(in: run.appendingPathComponent("dpo/checkpoints"))!
        #expect(!(try RunCheckpoint.stageState(in: checkpoint)).isEmpty)

        // On-policy DPO: pairs from the policy's samples ranked by the reward model, a TRL preference file.
        let pairs = try String(contentsOf: run.appendingPathComponent("dpo-on-policy/on-policy-pairs.jsonl"), encoding: .utf8).split(separator: "\n")
        let onPolicy = try summary(run, "dpo-on-policy")["evaluation"] as! [String: Double]
        #expect(pairs.count > 0 && onPolicy["sampling/pairs"] == Double(pairs.count) && onPolicy["sampling/prompts"] == 16)
        let pair = try JSONSerialization.jsonObject(with: Data(pairs[0].utf8)) as! [String: Any]
        #expect(pair["prompt"] != nil && pair["chosen"] != nil && pair["rejected"] != nil && (pair["images"] as? [String])?.count == 1)
        #expect(tornFiles(in: run).isEmpty)

        // Stopped five times across the stages (each stop writes a checkpoint), the run ends with
        // the same weights in every stage; candidates sampled before a stop are not sampled again.
        let resumed = URL(fileURLWithPath: scratch.path("resumed"))
        var candidateDates: [String: Date] = [:]
        for stopAfter in [7, 9, 4, 5, 9, 5] {
            let pipeline = try self.pipeline(resumed)
            var steps = 0
            pipeline.onEvent = { if case .step = $0 { steps += 1 } }
            pipeline.shouldStop = { steps >= stopAfter }
            do { try pipeline.run(); break } catch is TrainingInterrupted {}
            let candidates = resumed.appendingPathComponent("rejection/candidates")
            for name in (try? FileManager.default.contentsOfDirectory(atPath: candidates.path)) ?? [] {
                let date = try FileManager.default.attributesOfItem(atPath: candidates.appendingPathComponent(name).path)[.modificationDate] as! Date
                if let earlier = candidateDates[name] { #expect(date == earlier, "\(name) was not sampled again") }
                candidateDates[name] = date
            }
        }
        try self.pipeline(resumed).run()
        #expect(!candidateDates.isEmpty, "a stop fell after the rejection stage's sampling")
        for stage in ["sft", "reward", "rejection", "dpo", "dpo-on-policy"] {
            for file in ["model.safetensors"] + (stage == "reward" ? [VisionRewardModel.headFileName] : []) {
                let a = try Data(contentsOf: run.appendingPathComponent("\(stage)/model/\(file)"))
                let b = try Data(contentsOf: resumed.appendingPathComponent("\(stage)/model/\(file)"))
                #expect(a == b, "\(stage)/\(file) is bit-identical after stops and resumes")
            }
        }
        #expect(try Data(contentsOf: run.appendingPathComponent("rejection/kept.jsonl"))
                == Data(contentsOf: resumed.appendingPathComponent("rejection/kept.jsonl")))
    }

    /// OpenBLAS's thread count is the process's, and attention holds it at one thread while its
    /// workers run; a GEMM another thread ran meanwhile used one thread and gave other bits (K
    /// between OpenBLAS's block depth and twice it: a DPO micro-batch's 8 rows of tokens), so a
    /// stage trained beside another model — here a thread running attention in a loop, as a test
    /// running beside this one does — ended with timing-dependent weights. With `BLAS.Threads`
    /// such a GEMM waits for the window to close.
    @Test("a DPO stage trained while another thread of the process runs attention ends bit-identical to one trained alone",
          .enabled(if: Parallel.threadCount > 1 && BLAS.threadCount > 1, "one thread: attention opens no one-thread window"))
    func trainingBesideAttention() throws {
        let scratch = try Scratch()
        let recipe = try String(contentsOfFile: Self.recipe, encoding: .utf8)
        let defaults = recipe.components(separatedBy: "stages:")[0]
        let dpo = "  - name: dpo\n" + recipe.components(separatedBy: "  - name: dpo\n")[1].components(separatedBy: "  # A second DPO round")[0]
        try (defaults + "stages:\n" + dpo).write(toFile: scratch.path("dpo.yaml"), atomically: true, encoding: .utf8)
        func train(_ run: String) throws -> Data {
            let recipe = try Recipe.load(from: URL(fileURLWithPath: scratch.path("dpo.yaml")), dataRoot: TinyVisionSetup.world)
            let folder = URL(fileURLWithPath: scratch.path(run))
            try Pipeline(recipe: recipe, base: TinyVisionSetup.vision, runFolder: folder) { stage, input in
                try TrainingEnvironment.make(stage: stage, recipe: recipe, input: input, base: TinyVisionSetup.vision, runFolder: folder)
            }.run()
            return try Data(contentsOf: folder.appendingPathComponent("dpo/model/model.safetensors"))
        }
        let alone = try train("alone")
        final class Running: @unchecked Sendable { var value = true }
        let running = Running(), stopped = DispatchSemaphore(value: 0)
        Thread {
            // Enough query blocks and heads for attention to split across threads.
            let q = randomFloats([4, 8, 256, 32], seed: 1), k = randomFloats([4, 8, 256, 32], seed: 2), v = randomFloats([4, 8, 256, 32], seed: 3)
            while running.value {
                _ = scaledDotProductAttention(query: q, key: k, value: v, mask: AttentionMask(isCausal: true))
                usleep(1000)   // the stage beside it still gets the lock often
            }
            stopped.signal()
        }.start()
        let beside = try train("beside")
        running.value = false
        stopped.wait()
        #expect(alone == beside)
    }

    /// `kill -9` at random moments of the post-training stages (sampling, candidate batches, kept
    /// sets and EMA checkpoints are all written while the run is killed), then the same command:
    /// every stage's weights and the sampled data equal an uninterrupted run's, and no file is torn.
    @Test("killed with SIGKILL during post-training, the same command resumes to the same bits")
    func killAndResume() throws {
        let binary = builtVLM
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the release binary first (swift build -c release)")
        let scratch = try Scratch()
        // The post-training stages only, from a short SFT.
        let recipe = try String(contentsOfFile: Self.recipe, encoding: .utf8).replacingOccurrences(of: "checkpoint_every: 5", with: "checkpoint_every: 2")
        try recipe.write(toFile: scratch.path("post.yaml"), atomically: true, encoding: .utf8)
        func launch(_ run: String) throws -> Process {
            let process = Process()
            process.executableURL = binary
            process.arguments = ["train", scratch.path("post.yaml"), "--base", TinyVisionSetup.vision.path, "--out", run,
                                 "--data-root", TinyVisionSetup.world.path] + Self.overrides.flatMap { ["--set", $0] }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            return process
        }
        let started = Date()
        let straight = try launch(scratch.path("straight"))
        straight.waitUntilExit()
        try #require(straight.terminationStatus == 0)
        let duration = Date().timeIntervalSince(started)
        let compared = ["reward/model/model.safetensors", "reward/model/reward_head.safetensors", "rejection/kept.jsonl",
                        "rejection/model/model.safetensors", "dpo/model/model.safetensors", "dpo-on-policy/on-policy-pairs.jsonl",
                        "dpo-on-policy/model/model.safetensors"]
        var generator = RandomGenerator(seed: 5)
        var kills = 0
        for trial in 0..<3 {
            let run = scratch.path("killed-\(trial)")
            // The first kill of each trial falls in the first half of a whole run, so it lands even
            // when the machine speeds up.
            kills += try killAtRandomMoments(run: run, attempts: 3, duration: duration, first: (0.1, 0.4), later: (0.05, 0.25),
                                             generator: &generator, trial: trial) { try launch(run) }
            let last = try launch(run)
            last.waitUntilExit()
            #expect(last.terminationReason == .exit && last.terminationStatus == 0, "trial \(trial) finishes")
            for file in compared {
                let a = try Data(contentsOf: URL(fileURLWithPath: scratch.path("straight/\(file)")))
                let b = try Data(contentsOf: URL(fileURLWithPath: run + "/" + file))
                #expect(a == b, "trial \(trial): \(file) is bit-identical")
            }
        }
        #expect(kills >= 3, "\(kills) kills landed")
    }

    @Test("vlm reward scores every response of a preference file and reports pairwise accuracy")
    func rewardCommand() throws {
        let scratch = try Scratch()
        try trainSFTAndReward(in: scratch)
        let data = TinyVisionSetup.world.appendingPathComponent("preferences-heldout.jsonl")
        try runVLM(["reward", "--model", scratch.path("run/reward/model"), "--data", data.path, "--out", scratch.path("scores.jsonl")])
        let lines = try String(contentsOfFile: scratch.path("scores.jsonl"), encoding: .utf8).split(separator: "\n")
        let records = try String(contentsOf: data, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == records.count)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        let rewards = first["rewards"] as! [String: Double]
        #expect(rewards["chosen"] != nil && rewards["rejected"] != nil && rewards["chosen"] != rewards["rejected"])
        let bad = failure(["reward", "--model", TinyVisionSetup.vision.path, "--data", data.path])
        #expect(bad?.message.contains("reward_head.safetensors") == true, "\(bad?.message ?? "no error")")
        // Through a link, the target is replaced and the link kept.
        try FileManager.default.createSymbolicLink(atPath: scratch.path("link.jsonl"), withDestinationPath: scratch.path("scores.jsonl"))
        try FileManager.default.removeItem(atPath: scratch.path("scores.jsonl"))
        try runVLM(["reward", "--model", scratch.path("run/reward/model"), "--data", data.path, "--out", scratch.path("link.jsonl")])
        #expect(try String(contentsOfFile: scratch.path("scores.jsonl"), encoding: .utf8).split(separator: "\n") == lines)
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: scratch.path("link.jsonl"))) != nil)
        // Copied away from its images, no pair can be scored: an error, not an empty success.
        try FileManager.default.copyItem(atPath: data.path, toPath: scratch.path("moved.jsonl"))
        let none = failure(["reward", "--model", scratch.path("run/reward/model"), "--data", scratch.path("moved.jsonl")])
        #expect(none?.status == 1 && none?.message.contains("no record could be scored") == true, "\(none?.message ?? "no error")")
    }

    @Test("the held-out reward of a policy's answers is what vlm reward gives those answers, and vlm eval reports it")
    func heldOutReward() throws {
        let scratch = try Scratch()
        try trainSFTAndReward(in: scratch)
        let heldOut = TinyVisionSetup.world.appendingPathComponent("qa-heldout.jsonl")
        let policy = URL(fileURLWithPath: scratch.path("run/sft/model")), rewardModel = URL(fileURLWithPath: scratch.path("run/reward/model"))
        let scored = try scoreHeldOutAnswers(policy: policy, rewardModel: rewardModel, dataset: heldOut, maxSamples: 6, maxNewTokens: 6)
        #expect(scored.count == 6)
        // The same questions with the policy's answers in place of the references, scored as a file.
        let lines = try String(contentsOf: heldOut, encoding: .utf8).split(separator: "\n").prefix(6)
        var rewritten: [String] = []
        for (line, answer) in zip(lines, scored) {
            var object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            #expect(object["id"] as? String == answer.id)
            object["answer"] = answer.answer
            object["image"] = TinyVisionSetup.world.appendingPathComponent(object["image"] as! String).path
            rewritten.append(String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self))
        }
        try (rewritten.joined(separator: "\n") + "\n").write(toFile: scratch.path("answers.jsonl"), atomically: true, encoding: .utf8)
        let asFile = try scoreResponses(directory: rewardModel, data: URL(fileURLWithPath: scratch.path("answers.jsonl")))
        #expect(asFile.map { $0.rewards["response"]! } == scored.map(\.reward))
        #expect(Set(scored.map(\.reward)).count > 1, "different answers or images get different rewards")

        let eval = try #require(try VLM.parseAsRoot(["eval", "--model", policy.path, "--data", heldOut.path, "--samples", "6",
                                                     "--max-new-tokens", "6", "--reward-model", rewardModel.path]) as? EvalCommand)
        let mean = try #require(try eval.metrics()["held_out_reward"])
        #expect(abs(mean - scored.map(\.reward).reduce(0, +) / 6) < 1e-12)
    }

    @Test("vlm eval ranks a preference file's pairs by the model's own log-probabilities, and with a reference by TRL's implicit rewards")
    func preferenceEvaluation() throws {
        let scratch = try Scratch()
        let data = TinyVisionSetup.world.appendingPathComponent("preferences-heldout.jsonl")
        let model = TinyVisionSetup.vision.path
        func metrics(_ arguments: [String]) throws -> [String: Double] {
            try #require(try VLM.parseAsRoot(["eval", "--model", model] + arguments) as? EvalCommand).metrics()
        }
        let own = try metrics(["--data", data.path])
        let records = try String(contentsOf: data, encoding: .utf8).split(separator: "\n")
        #expect(own["preference/pairs"] == Double(records.count))
        let accuracy = try #require(own["preference/logps/accuracies"])
        #expect(accuracy > 0 && accuracy < 1, "an untrained model ranks some pairs each way: \(accuracy)")
        #expect(own["preference/logps/chosen"]! < 0 && own["preference/logps/rejected"]! < 0)
        #expect(own["preference/rewards/accuracies"] == nil, "no implicit rewards without a reference")

        // Against itself as the reference: every implicit reward and the drift are exactly 0.
        let against = try metrics(["--data", data.path, "--reference", model])
        #expect(against["preference/log_ratio"] == 0 && against["preference/rewards/margins"] == 0)
        #expect(against["preference/reference/logps/accuracies"] == accuracy && against["preference/logps/accuracies"] == accuracy)

        // A pair whose responses are the same text is a tie: never counted as ranked right.
        var tie = try JSONSerialization.jsonObject(with: Data(records[0].utf8)) as! [String: Any]
        tie["rejected"] = tie["chosen"]
        tie["images"] = (tie["images"] as! [String]).map { TinyVisionSetup.world.appendingPathComponent($0).path }
        try (String(decoding: try JSONSerialization.data(withJSONObject: tie), as: UTF8.self) + "\n")
            .write(toFile: scratch.path("tie.jsonl"), atomically: true, encoding: .utf8)
        let tied = try metrics(["--data", scratch.path("tie.jsonl")])
        #expect(tied["preference/logps/accuracies"] == 0 && tied["preference/logps/chosen"] == tied["preference/logps/rejected"])

        let twoFiles = failure(["eval", "--model", model, "--data", data.path, "--data", scratch.path("tie.jsonl")])
        #expect(twoFiles?.message.contains("one preference file at a time") == true, "\(twoFiles?.message ?? "no error")")
        let noPairs = failure(["eval", "--model", model, "--data", TinyVisionSetup.world.appendingPathComponent("qa-heldout.jsonl").path,
                               "--reference", model])
        #expect(noPairs?.message.contains("--reference needs a preference file") == true, "\(noPairs?.message ?? "no error")")
        // The pairs are encoded for the policy: a reference of another kind is an error, not a crash.
        let otherKind = failure(["eval", "--model", model, "--data", data.path,
                                 "--reference", TinyVisionSetup.folder.appendingPathComponent("llama").path])
        #expect(otherKind?.status == 1 && otherKind?.message.contains("is not the same kind of model") == true, "\(otherKind?.message ?? "no error")")
    }

    @Test("vlm eval reads at most --samples records; a file none of whose records can be used is an error")
    func evalSamplesAndUnusableRecords() throws {
        let scratch = try Scratch()
        let heldOut = TinyVisionSetup.world.appendingPathComponent("qa-heldout.jsonl")
        let model = TinyVisionSetup.vision.path
        for count in [1, 3, 5, 10] {
            let metrics = try #require(try VLM.parseAsRoot(["eval", "--model", model, "--data", heldOut.path, "--samples", "\(count)",
                                                            "--max-new-tokens", "2"]) as? EvalCommand).metrics()
            #expect(metrics["samples"] == Double(count), "--samples \(count): \(metrics["samples"] ?? -1)")
        }
        // Copied away from its images, no record can be used.
        try FileManager.default.copyItem(atPath: heldOut.path, toPath: scratch.path("moved.jsonl"))
        let none = failure(["eval", "--model", model, "--data", scratch.path("moved.jsonl")])
        #expect(none?.status == 1 && none?.message.contains("no record could be used") == true, "\(none?.message ?? "no error")")
    }

    /// The recipe's SFT and reward stages only, shorter, into `run/` of `scratch`.
    private func trainSFTAndReward(in scratch: Scratch) throws {
        let recipe = try String(contentsOfFile: Self.recipe, encoding: .utf8)
        let short = recipe.components(separatedBy: "  # Sample 4 answers")[0].replacingOccurrences(of: "steps: 12", with: "steps: 3")
        try short.write(toFile: scratch.path("reward.yaml"), atomically: true, encoding: .utf8)
        try runVLM(["train", scratch.path("reward.yaml"), "--base", TinyVisionSetup.vision.path, "--out", scratch.path("run"),
                    "--data-root", TinyVisionSetup.world.path])
    }

    @Test("post-training recipe mistakes are named by file, line and field")
    func recipeMistakes() throws {
        let scratch = try Scratch()
        let recipe = try String(contentsOfFile: Self.recipe, encoding: .utf8)
        let mistakes: [(old: String, new: String, message: String)] = [
            ("input_stage: sft", "input_stage: dpo", "'dpo' is not an earlier stage"),
            ("input_stage: sft", "", "'reward', the stage before it, trains a reward model, and a rejection stage trains on from a policy; "
                + "name the stage it starts from (input_stage: sft)"),
            ("input_stage: sft", "input_stage: reward", "'reward' trains a reward model"),
            ("trainable: [visionModel, crossAttentionLayers, rewardHead]", "trainable: [visionModel]", "add rewardHead"),
            ("answer_check: exact", "answer_check: regex", "needs an answer_pattern"),
            ("dpo_beta: 0.1", "dpo_betta: 0.1", "did you mean 'dpo_beta'"),
        ]
        for mistake in mistakes {
            try recipe.replacingOccurrences(of: mistake.old, with: mistake.new).write(toFile: scratch.path("r.yaml"), atomically: true, encoding: .utf8)
            let result = failure(["train", scratch.path("r.yaml"), "--base", TinyVisionSetup.vision.path, "--out", scratch.path("run"),
                                  "--data-root", TinyVisionSetup.world.path])
            #expect(result?.message.contains("r.yaml:") == true && result?.message.contains(mistake.message) == true, "\(result?.message ?? "no error")")
        }
    }
}
