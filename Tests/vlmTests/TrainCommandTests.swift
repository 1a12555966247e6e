import Checkpoint
import Foundation
import Models
import Testing
import TensorCore
import _TestSupport
@testable import vlm
#if canImport(Glibc)
import Glibc
#endif

/// A tiny vision model over the built-in world, made once: the world (tiny size), a 512-id
/// tokenizer trained on its corpus, a random 2-layer Llama of width 32 and the world's adapters.
enum TinyVisionSetup {
    static let folder: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vlm-train-setup-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        let path = { (name: String) in url.appendingPathComponent(name).path }
        try! runVLM(["data", "synth", "--out", path("world"), "--size", "tiny", "--seed", "3"])
        try! runVLM(["tokenizer", "train", "--corpus", path("world/corpus.txt"), "--vocab-size", "512", "--out", path("tokenizer")])
        try! runVLM(["llama", "init", "--tokenizer", path("tokenizer"), "--out", path("llama"), "--hidden-size", "32",
                     "--intermediate-size", "64", "--layers", "2", "--heads", "2", "--kv-heads", "1"])
        try! runVLM(["adapters", "init", "--text-model", path("llama"), "--adapter", repositoryFile("adapters/world.yaml").path,
                     "--out", path("vision")])
        return url
    }()

    static var world: URL { folder.appendingPathComponent("world") }
    static var vision: URL { folder.appendingPathComponent("vision") }

    /// A short two-stage recipe: 6 caption steps, 6 question steps, a checkpoint after every step.
    static func recipe(in scratch: Scratch, extra: String = "") throws -> String {
        let text = """
            defaults:
              trainable: [visionModel, projector, crossAttentionLayers, extraEmbeddingRows]
              micro_batch_size: 4
              gradient_accumulation: 2
              max_length: 320
              learning_rate: 0.003
              warmup_steps: 2
              checkpoint_every: 1
            stages:
              - name: pretrain
                kind: pretrain
                datasets: [pretrain-hq.jsonl, {path: pretrain-noisy.jsonl, weight: 0.5}]
                steps: 6
              - name: sft
                kind: sft
                datasets: [qa-train.jsonl]
                steps: 6\(extra)
            """
        try text.write(toFile: scratch.path("recipe.yaml"), atomically: true, encoding: .utf8)
        return scratch.path("recipe.yaml")
    }
}

/// The repository's file at `relative` (this file is Tests/vlmTests/TrainCommandTests.swift).
func repositoryFile(_ relative: String) -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(relative)
}

/// The `vlm` executable built with these tests: beside the test bundle (whatever the build folder
/// and configuration), else `.build/release/vlm`.
let builtVLM: URL = {
    var folder = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for _ in 0..<3 {
        let candidate = folder.appendingPathComponent("vlm")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        folder = folder.deletingLastPathComponent()   // out of VLMKitPackageTests.xctest/…
    }
    return repositoryFile(".build/release/vlm")
}()

/// Starts `launch()` `attempts` times on the run folder `run`, each time killing it with SIGKILL at a
/// random moment — the first within `first` (start, width) of `duration`, later ones within `later`,
/// since a resumed run has less left to do — and checks that no file in the folder is torn.
/// - Returns: how many kills landed (a run that had already finished was not killed).
func killAtRandomMoments(run: String, attempts: Int, duration: Double, first: (Double, Double), later: (Double, Double),
                         generator: inout RandomGenerator, trial: Int, launch: () throws -> Process) throws -> Int {
    var kills = 0
    for attempt in 0..<attempts {
        let process = try launch()
        let window = attempt == 0 ? first : later
        usleep(useconds_t((window.0 + window.1 * generator.nextUniform()) * duration * 1e6))
        if process.isRunning { kill(process.processIdentifier, SIGKILL); kills += 1 }
        process.waitUntilExit()
        #expect(tornFiles(in: URL(fileURLWithPath: run)).isEmpty, "trial \(trial): a torn file")
    }
    return kills
}

/// The files of a run folder that must always be whole: JSON files parse, metrics lines parse,
/// safetensors headers and sizes agree. Hidden `.NAME.tmp-PID` entries are a killed writer's
/// temporaries (removed by the next run) and are not looked into.
func tornFiles(in run: URL) -> [String] {
    var torn: [String] = []
    guard let walker = FileManager.default.enumerator(at: run, includingPropertiesForKeys: nil) else { return [] }
    for case let url as URL in walker {
        if url.lastPathComponent.hasPrefix(".") { walker.skipDescendants(); continue }
        guard let data = FileManager.default.contents(atPath: url.path) else { continue }
        switch url.pathExtension {
        case "json":
            if (try? JSONSerialization.jsonObject(with: data)) == nil { torn.append(url.path) }
        case "jsonl":
            for line in data.split(separator: UInt8(ascii: "\n")) where (try? JSONSerialization.jsonObject(with: Data(line))) == nil {
                torn.append(url.path)
            }
        case "safetensors":
            if (try? SafetensorsFile(path: url.path)) == nil { torn.append(url.path) }
        default: break
        }
    }
    return torn
}

@Suite("vlm train: the staged recipe end to end", .serialized)
struct TrainCommandTests {
    @Test("a two-stage run writes loadable stage models whose text-only logits equal the base model's; a rerun skips both")
    func endToEnd() throws {
        let scratch = try Scratch()
        let recipe = try TinyVisionSetup.recipe(in: scratch)
        let run = scratch.path("run")
        try runVLM(["train", recipe, "--base", TinyVisionSetup.vision.path, "--out", run, "--data-root", TinyVisionSetup.world.path])
        for stage in ["pretrain", "sft"] {
            let folder = URL(fileURLWithPath: run).appendingPathComponent(stage)
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("summary.json"))) as! [String: Any]
            #expect(summary["steps"] as? Int == 6)
            #expect(summary["textOnlyLogitsUnchanged"] as? Bool == true, "\(stage): the drop-in still holds")
            let lines = try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 6)
            let model = try MllamaForConditionalGeneration.load(directory: folder.appendingPathComponent("model"))
            #expect(model.config.imageTokenIndex == 512)
            for file in ["tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "generation_config.json"] {
                #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("model/\(file)").path), "\(stage)/model/\(file)")
            }
        }
        let modified = try FileManager.default.attributesOfItem(atPath: run + "/sft/model/model.safetensors")[.modificationDate] as! Date
        try runVLM(["train", recipe, "--base", TinyVisionSetup.vision.path, "--out", run, "--data-root", TinyVisionSetup.world.path])
        #expect(try FileManager.default.attributesOfItem(atPath: run + "/sft/model/model.safetensors")[.modificationDate] as! Date == modified,
                "finished stages are not run again")
        #expect(tornFiles(in: URL(fileURLWithPath: run)).isEmpty)
    }

    @Test("vlm bench train --model times a world checkpoint's step (its <|image|> id lies past lm_head)")
    func benchTrainOnAModelFolder() throws {
        try runVLM(["bench", "train", "--model", TinyVisionSetup.vision.path, "--batch", "2", "--tokens", "12", "--steps", "1"])
        #expect(failure(["bench", "train", "--batch", "2"])?.message.contains("--batch and --tokens go with --model") == true)
    }

    @Test("a recipe mistake is named by file, line and field before any work")
    func recipeMistake() throws {
        let scratch = try Scratch()
        let recipe = try TinyVisionSetup.recipe(in: scratch, extra: "\n    learning_rat: 0.1")
        let result = failure(["train", recipe, "--base", TinyVisionSetup.vision.path, "--out", scratch.path("run"),
                              "--data-root", TinyVisionSetup.world.path])
        #expect(result?.status == 1)
        #expect(result?.message.contains("recipe.yaml:18: stages[1] 'sft'.learning_rat: unknown key (did you mean 'learning_rate'?)") == true,
                "\(result?.message ?? "no error")")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("run/sft")))
    }

    @Test("vlm llama init refuses an odd head dimension and zero sizes as usage errors, writing nothing")
    func llamaInitSizes() throws {
        let scratch = try Scratch()
        let base = ["llama", "init", "--tokenizer", TinyVisionSetup.folder.appendingPathComponent("tokenizer").path, "--out", scratch.path("llama")]
        let odd = failure(base + ["--hidden-size", "60", "--heads", "4"])
        #expect(odd?.status == 64 && odd?.message.contains("must be even") == true, "\(String(describing: odd))")
        for option in ["--max-positions", "--intermediate-size"] {
            #expect(failure(base + [option, "0"])?.status == 64, "\(option) 0")
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.path("llama")))
    }

    @Test("a recipe read from standard input ('-') runs as the same file would")
    func recipeFromStandardInput() throws {
        let binary = builtVLM
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the release binary first (swift build -c release)")
        let scratch = try Scratch()
        let text = try String(contentsOfFile: try TinyVisionSetup.recipe(in: scratch), encoding: .utf8)
            .replacingOccurrences(of: "steps: 6", with: "steps: 1")
        let process = Process()
        process.executableURL = binary
        process.arguments = ["train", "-", "--base", TinyVisionSetup.vision.path, "--out", scratch.path("run"), "--data-root", TinyVisionSetup.world.path]
        let input = Pipe(), errors = Pipe()
        (process.standardInput, process.standardOutput, process.standardError) = (input, FileHandle.nullDevice, errors)
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(message)")
        #expect(FileManager.default.fileExists(atPath: scratch.path("run/sft/model/model.safetensors")))
    }

    @Test("vlm data synth and vlm llama init write through a link to a folder, keeping the link")
    func outputThroughLink() throws {
        let scratch = try Scratch()
        for (name, command) in [("world", ["data", "synth", "--size", "tiny", "--out"]),
                                ("llama", ["llama", "init", "--tokenizer", TinyVisionSetup.folder.appendingPathComponent("tokenizer").path,
                                           "--force", "--out"])] {
            try FileManager.default.createDirectory(atPath: scratch.path(name + "-target"), withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: scratch.path(name), withDestinationPath: scratch.path(name + "-target"))
            try runVLM(command + [scratch.path(name)])
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: scratch.path(name))) == scratch.path(name + "-target"), "\(name)")
            #expect(try !FileManager.default.contentsOfDirectory(atPath: scratch.path(name + "-target")).isEmpty, "\(name): written into the target")
        }
    }

    @Test("a later stage's missing dataset is named before the first stage trains")
    func missingLaterDataset() throws {
        let scratch = try Scratch()
        let recipe = try TinyVisionSetup.recipe(in: scratch)
        let text = try String(contentsOfFile: recipe, encoding: .utf8).replacingOccurrences(of: "[qa-train.jsonl]", with: "[qa-trian.jsonl]")
        try text.write(toFile: recipe, atomically: true, encoding: .utf8)
        let result = failure(["train", recipe, "--base", TinyVisionSetup.vision.path, "--out", scratch.path("run"),
                              "--data-root", TinyVisionSetup.world.path])
        #expect(result?.status == 1)
        #expect(result?.message.contains("recipe.yaml: sft.datasets[0]: qa-trian.jsonl:") == true && result?.message.contains("does not exist") == true,
                "\(result?.message ?? "no error")")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("run/pretrain")), "the first stage did not start")
        // An --out that is a file is named, not reported as a Foundation error code (with a recipe
        // whose datasets all exist, so that this is the only mistake).
        try text.replacingOccurrences(of: "[qa-trian.jsonl]", with: "[qa-train.jsonl]").write(toFile: recipe, atomically: true, encoding: .utf8)
        try Data("x".utf8).write(to: URL(fileURLWithPath: scratch.path("file")))
        let file = failure(["train", recipe, "--base", TinyVisionSetup.vision.path, "--out", scratch.path("file"), "--data-root", TinyVisionSetup.world.path])
        #expect(file?.status == 1 && file?.message.contains("is a file") == true, "\(file?.message ?? "no error")")
    }

    /// `kill -9` at random moments — some inside checkpoint writes, which take most of a step at
    /// this size — then the same command, until it finishes: the weights equal an uninterrupted
    /// run's bit for bit, and no file in the run folder is ever torn.
    @Test("killed with SIGKILL at random moments, the same command resumes to the same bits")
    func killAndResume() throws {
        let binary = builtVLM
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the release binary first (swift build -c release)")
        let scratch = try Scratch()
        let recipe = try TinyVisionSetup.recipe(in: scratch)
        func arguments(_ run: String) -> [String] {
            ["train", recipe, "--base", TinyVisionSetup.vision.path, "--out", run, "--data-root", TinyVisionSetup.world.path]
        }
        func launch(_ run: String) throws -> Process {
            let process = Process()
            process.executableURL = binary
            process.arguments = arguments(run)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            return process
        }
        let started = Date()
        let straight = try launch(scratch.path("straight"))
        straight.waitUntilExit()
        #expect(straight.terminationStatus == 0)
        let duration = Date().timeIntervalSince(started)
        let expected = try Data(contentsOf: URL(fileURLWithPath: scratch.path("straight/sft/model/model.safetensors")))

        // Ten trials, each in a fresh run folder: two or three kills at random moments, then the
        // same command to the end. Each trial's first kill falls in the first third of a whole run
        // (it lands even when the machine runs faster than it did for the uninterrupted run); later
        // ones come sooner, since a resumed run has less left to do.
        var generator = RandomGenerator(seed: 11)
        var kills = 0
        for trial in 0..<10 {
            let run = scratch.path("killed-\(trial)")
            let attempts = 2 + Int(generator.next() % 2)
            kills += try killAtRandomMoments(run: run, attempts: attempts, duration: duration, first: (0.02, 0.3), later: (0.02, 0.2),
                                             generator: &generator, trial: trial) { try launch(run) }
            let last = try launch(run)
            last.waitUntilExit()
            #expect(last.terminationReason == .exit && last.terminationStatus == 0, "trial \(trial) finishes")
            let resumed = try Data(contentsOf: URL(fileURLWithPath: run + "/sft/model/model.safetensors"))
            #expect(resumed == expected, "trial \(trial): the resumed run's weights are bit-identical")
            let leftovers = try FileManager.default.subpathsOfDirectory(atPath: run)
                .filter { $0.split(separator: "/").contains { $0.hasPrefix(".") } }
            #expect(leftovers.isEmpty, "trial \(trial): temporaries of killed writers were removed: \(leftovers)")
        }
        #expect(kills >= 10, "\(kills) kills landed")
    }

    /// Ctrl-C stops at the next step boundary after a checkpoint, every time (before, with a C
    /// handler beside the cleanup's dispatch sources, about half the tries died of the signal with
    /// no checkpoint). The same command then resumes to an uninterrupted run's bits.
    @Test("Ctrl-C stops at a step boundary with a checkpoint and exit 130, every time; the same command resumes to the same bits")
    func interruptAndResume() throws {
        let binary = builtVLM
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the release binary first (swift build -c release)")
        let scratch = try Scratch()
        let recipe = try TinyVisionSetup.recipe(in: scratch)
        func launch(_ run: String, log: String) throws -> Process {
            FileManager.default.createFile(atPath: log, contents: nil)
            let process = Process()
            process.executableURL = binary
            process.arguments = ["train", recipe, "--base", TinyVisionSetup.vision.path, "--out", run, "--data-root", TinyVisionSetup.world.path,
                                 "--progress-every", "1"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            try process.run()
            return process
        }
        let straight = try launch(scratch.path("straight"), log: scratch.path("straight.log"))
        straight.waitUntilExit()
        let expected = try Data(contentsOf: URL(fileURLWithPath: scratch.path("straight/sft/model/model.safetensors")))
        for trial in 0..<6 {
            let run = scratch.path("interrupted-\(trial)"), log = scratch.path("interrupted-\(trial).log")
            let process = try launch(run, log: log)
            // After the first training step (a later one on odd trials), as a user would press Ctrl-C.
            let deadline = Date().addingTimeInterval(120)
            while process.isRunning, Date() < deadline,
                  !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains(trial % 2 == 0 ? "pretrain step 1/" : "sft step 2/") {
                usleep(2_000)
            }
            try #require(process.isRunning, "trial \(trial): the run ended before the interrupt")
            kill(process.processIdentifier, SIGINT)
            process.waitUntilExit()
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(process.terminationReason == .exit && process.terminationStatus == 130,
                    "trial \(trial): \(process.terminationReason == .exit ? "exit" : "signal") \(process.terminationStatus)")
            #expect(text.contains("interrupted in stage") && text.contains("a checkpoint was written"), "trial \(trial): \(text.suffix(300))")
            #expect(tornFiles(in: URL(fileURLWithPath: run)).isEmpty, "trial \(trial): a torn file")
            if trial >= 4 {
                let resumed = try launch(run, log: log + ".resumed")
                resumed.waitUntilExit()
                #expect(resumed.terminationStatus == 0)
                #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/sft/model/model.safetensors")) == expected,
                        "trial \(trial): the resumed run's weights are bit-identical")
            }
        }
    }
}

@Suite("vlm run: the main job, scaled down")
struct RunCommandTests {
    @Test("a tiny main job writes a report whose numbers come from its stages, and a second run reuses every step")
    func tinyMainJob() throws {
        let scratch = try Scratch()
        let base = """
            defaults: {trainable: [textModel], micro_batch_size: 8, max_length: 320, learning_rate: 0.003, checkpoint_every: 100}
            stages:
              - {name: text, kind: pretrain, datasets: [corpus.txt], steps: 4}
              - {name: questions, kind: sft, datasets: [qa-train.jsonl], steps: 4}
            """
        let vision = """
            defaults: {trainable: [visionModel, projector, crossAttentionLayers, extraEmbeddingRows], micro_batch_size: 8,
                       max_length: 320, learning_rate: 0.003, checkpoint_every: 100}
            stages:
              - {name: encoder, kind: encoder, datasets: [regions.jsonl], eval_datasets: [regions-heldout.jsonl],
                 trainable: [visionModel, patchHeads], steps: 2}
              - {name: pretrain, kind: pretrain, datasets: [pretrain-hq.jsonl], steps: 4}
              - {name: sft, kind: sft, datasets: [qa-train.jsonl], eval_datasets: [qa-heldout.jsonl], eval_samples: 8, steps: 4}
              - {name: reward, kind: reward, datasets: [preferences.jsonl], trainable: [visionModel, crossAttentionLayers, rewardHead], steps: 2}
              - {name: dpo, kind: dpo, input_stage: sft, datasets: [preferences.jsonl], steps: 2}
            compare: {archs: [cross-attention, llava-linear], stages: [pretrain, sft], seeds: 1}
            """
        try base.write(toFile: scratch.path("base.yaml"), atomically: true, encoding: .utf8)
        try vision.write(toFile: scratch.path("vision.yaml"), atomically: true, encoding: .utf8)
        let arguments = ["run", "--out", scratch.path("job"), "--size", "tiny", "--base-recipe", scratch.path("base.yaml"),
                         "--recipe", scratch.path("vision.yaml"), "--adapter", repositoryFile("adapters/world.yaml").path]
        try runVLM(arguments)
        let report = try String(contentsOfFile: scratch.path("job/report.md"), encoding: .utf8)
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch.path("job/metrics.json")))) as! [String: Any]
        let evaluations = metrics["evaluations"] as! [[String: Any]]
        #expect(evaluations.map { $0["model"] as! String } == ["base Llama (no image)", "pretrain", "sft", "dpo"])
        // Every model describes held-out pictures (the captioning stages' metric).
        let captions = evaluations.map { ($0["metrics"] as! [String: Double])["caption_accuracy"] }
        #expect(captions.allSatisfy { $0 != nil && (0...1).contains($0!) })
        #expect(report.contains("## Held-out scene descriptions") && report.contains(String(format: "%.1f %%", 100 * captions.last!!)))
        // … and as a caption, the layout the pretraining stages train on.
        let continued = evaluations.map { ($0["metrics"] as! [String: Double])["caption_layout_accuracy"] }
        #expect(continued.allSatisfy { $0 != nil && (0...1).contains($0!) })
        #expect(report.contains("attribute accuracy (caption)") && report.contains(String(format: "%.1f %% |", 100 * continued[1]!)))
        // The policies' answers, scored by the job's reward model: before and after DPO.
        let rewards = evaluations.compactMap { ($0["metrics"] as! [String: Double])["held_out_reward"] }
        #expect(rewards.count == 2 && rewards.allSatisfy(\.isFinite))
        #expect(report.contains("## Rewards") && report.contains("Held-out reward of each policy's answers")
                && report.contains(String(format: "dpo: mean %.3f", rewards[1])))
        // DPO against the SFT policy it started from, question by question, in all three files.
        let paired = try #require((metrics["paired_changes"] as? [[String: Any]])?.first)
        #expect(paired["before"] as? String == "sft" && paired["after"] as? String == "dpo")
        let questions = try #require(paired["questions"] as? Int), gained = try #require(paired["gained"] as? Int)
        let lost = try #require(paired["lost"] as? Int)
        #expect(questions > 0 && gained + lost <= questions)
        #expect(report.contains(String(format: "- dpo against sft: exact match %+.1f points (%d gained, %d lost of %d;",
                                       100 * Double(gained - lost) / Double(questions), gained, lost, questions)))
        let pairedHTML = try String(contentsOfFile: scratch.path("job/report.html"), encoding: .utf8)
        #expect(pairedHTML.contains("<td>dpo</td><td>sft</td><td>\(questions)</td>"))
        let final = (evaluations.last!["metrics"] as! [String: Double])
        #expect(final["exact_match"] != nil && final["exact_match_blank_images"] != nil)
        #expect(report.contains(String(format: "%.1f %%", 100 * final["exact_match"]!)), "the report shows the measured number")
        #expect(report.contains("Text-only logits equal the base Llama's after every stage: yes."))
        let stages = metrics["stages"] as! [[String: Any]]
        #expect(stages.allSatisfy { $0["text_only_logits_unchanged"] as? Bool == true })
        // The page is self-contained: charts inline, pictures as data URLs, nothing fetched.
        let html = try String(contentsOfFile: scratch.path("job/report.html"), encoding: .utf8)
        #expect(html.components(separatedBy: "<svg").count - 1 >= 2, "an accuracy chart and a loss chart")
        #expect(html.components(separatedBy: "src=\"data:image/png;base64,").count - 1 == (metrics["samples"] as! [Any]).count)
        #expect(!html.contains("src=\"http") && !html.contains("href=\"http"))
        #expect(html.contains(String(format: "%.1f %%", 100 * final["exact_match"]!)))
        // The fusion comparison ran on the same world after the stages and is in all three files.
        let comparison = metrics["comparison"] as! [String: Any]
        let designs = comparison["designs"] as! [[String: Any]]
        #expect(designs.map { $0["design"] as! String } == ["cross-attention", "llava-linear"])
        let linear = (designs[1]["figures"] as! [String: [String: Any]])["exact_match"]!["mean"] as! Double
        #expect(report.contains("## Fusion designs compared") && report.contains(String(format: "%.1f %%", 100 * linear)))
        #expect(html.contains("Held-out exact match by question type, per fusion design"))
        #expect(html.components(separatedBy: "<svg").count - 1 >= 3, "the comparison's chart too")
        #expect(FileManager.default.fileExists(atPath: scratch.path("job/compare/comparison.md")))
        // The encoder stage: its own metric in the report, not asked questions, and the encoder every design starts from.
        let encoder = try #require(stages.first { $0["stage"] as? String == "encoder" })
        let patches = try #require((encoder["evaluation"] as? [String: Double])?["patch_accuracy"])
        #expect(report.contains("## Image encoder pretraining") && report.contains(String(format: "%.1f %%", 100 * patches)))
        #expect(html.contains("<h2>Image encoder pretraining</h2>") && html.contains("Patch-label loss"))
        let pretrained = try SafetensorsFile(path: scratch.path("job/run/encoder/model/model.safetensors")).tensors()
        for design in ["cross-attention", "llava-linear"] {
            let initial = try SafetensorsFile(path: scratch.path("job/compare/\(design)/seed-0/init/model.safetensors")).tensors()
            let encoderNames = initial.keys.filter { $0.contains("vision_model.") }
            #expect(!encoderNames.isEmpty)
            for name in encoderNames {
                let key = String(name[name.range(of: "vision_model.")!.lowerBound...])
                let source = try #require(pretrained.first { $0.key.hasSuffix(key) && $0.key.contains("vision_model.") }?.value)
                #expect(initial[name]!.floats() == source.floats(), "\(design): \(name) is the pretrained encoder's")
            }
        }

        let weights = scratch.path("job/run/sft/model/model.safetensors")
        let modified = try FileManager.default.attributesOfItem(atPath: weights)[.modificationDate] as! Date
        try runVLM(arguments)
        #expect(try FileManager.default.attributesOfItem(atPath: weights)[.modificationDate] as! Date == modified)
    }
}
