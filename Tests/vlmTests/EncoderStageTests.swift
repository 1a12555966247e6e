import Checkpoint
import Collectives
import Foundation
import Models
import Processing
import Testing
import TensorCore
@testable import Training
import _TestSupport
@testable import vlm

/// The `encoder` stage (image-encoder pretraining on the world's regions) on the tiny world.
@Suite("vlm train: the encoder stage", .serialized)
struct EncoderStageTests {
    static func recipe(in scratch: Scratch, steps: Int = 6) throws -> String {
        let text = """
            defaults: {micro_batch_size: 4, max_length: 320, learning_rate: 0.003, warmup_steps: 1, checkpoint_every: 2}
            stages:
              - name: encoder
                kind: encoder
                trainable: [visionModel, patchHeads]
                datasets: [regions.jsonl]
                eval_datasets: [regions-heldout.jsonl]
                steps: \(steps)
            """
        try text.write(toFile: scratch.path("encoder.yaml"), atomically: true, encoding: .utf8)
        return scratch.path("encoder.yaml")
    }

    static func weights(_ folder: String) throws -> [String: [Float]] {
        try SafetensorsFile(path: folder + "/model.safetensors").tensors().mapValues { $0.floats() }
    }

    @Test("it trains only the image encoder, reports held-out patch accuracy, and writes a model every tool loads")
    func trainsTheEncoderOnly() throws {
        let scratch = try Scratch()
        let recipe = try Self.recipe(in: scratch)
        let run = scratch.path("run")
        try runVLM(["train", recipe, "--base", TinyVisionSetup.vision.path, "--out", run, "--data-root", TinyVisionSetup.world.path])
        let summary = try JSONDecoder().decode(StageSummary.self, from: Data(contentsOf: URL(fileURLWithPath: run + "/encoder/summary.json")))
        #expect(summary.steps == 6 && summary.samples == 24)
        #expect(summary.finalLoss! < summary.firstLoss!, "the patch-label loss falls: \(summary.firstLoss!) → \(summary.finalLoss!)")
        for field in ["color", "column", "row", "shape", "size"] {
            #expect((0...1).contains(summary.evaluation["patch_accuracy/\(field)"] ?? -1), "\(field)")
        }
        let before = try Self.weights(TinyVisionSetup.vision.path), after = try Self.weights(run + "/encoder/model")
        #expect(before.keys.sorted() == after.keys.sorted(), "the heads are not written into the model")
        let changed = before.keys.filter { before[$0] != after[$0] }
        #expect(!changed.isEmpty && changed.allSatisfy { $0.hasPrefix("model.vision_model.") || $0.hasPrefix("vision_model.") },
                "only encoder weights change: \(changed.filter { !$0.contains("vision_model.") })")
        let model = try MllamaForConditionalGeneration.load(directory: URL(fileURLWithPath: run + "/encoder/model"))
        #expect(model.config.imageTokenIndex == 512)
        for file in ["tokenizer.json", "preprocessor_config.json", "chat_template.json"] {
            #expect(FileManager.default.fileExists(atPath: run + "/encoder/model/" + file), "\(file)")
        }
    }

    @Test("the same seed gives the same bits; a run stopped twice resumes to them")
    func reproducibleAndResumable() throws {
        let scratch = try Scratch()
        let recipe = try Recipe.load(from: URL(fileURLWithPath: try Self.recipe(in: scratch)), dataRoot: TinyVisionSetup.world)
        let settings = recipe.stages[0]
        func environment() throws -> StageEnvironment {
            try TrainingEnvironment.make(stage: settings, recipe: recipe, input: TinyVisionSetup.vision, base: TinyVisionSetup.vision)
        }
        var outputs: [[String: [Float]]] = []
        for name in ["a", "b"] {
            _ = try StageRunner(settings: settings, folder: scratch.url.appendingPathComponent(name), environment: environment()).run()
            outputs.append(try Self.weights(scratch.path(name + "/model")))
        }
        #expect(outputs[0] == outputs[1], "same seed, same bits")

        let folder = scratch.url.appendingPathComponent("stopped")
        for stepsThisRun in [3, 2] {
            var steps = 0
            let runner = StageRunner(settings: settings, folder: folder, environment: try environment(),
                                     onEvent: { if case .step = $0 { steps += 1 } }, shouldStop: { steps >= stepsThisRun })
            #expect(throws: TrainingInterrupted.self) { _ = try runner.run() }
        }
        _ = try StageRunner(settings: settings, folder: folder, environment: environment()).run()
        #expect(try Self.weights(folder.appendingPathComponent("model").path) == outputs[0], "resumed: the same bits")
    }

    @Test("vlm compare --image-encoder starts every design from that encoder, and redoes runs made from another one")
    func comparisonFromThePretrainedEncoder() throws {
        let scratch = try Scratch()
        try runVLM(["train", try Self.recipe(in: scratch, steps: 2), "--base", TinyVisionSetup.vision.path, "--out", scratch.path("run"),
                    "--data-root", TinyVisionSetup.world.path])
        let encoder = scratch.path("run/encoder/model")
        let recipe = """
            defaults: {trainable: [projector, crossAttentionLayers, extraEmbeddingRows], micro_batch_size: 4, max_length: 400,
                       learning_rate: 0.003, checkpoint_every: 100}
            stages:
              - {name: sft, kind: sft, datasets: [qa-train.jsonl], eval_datasets: [qa-heldout.jsonl], eval_samples: 4,
                 eval_max_new_tokens: 4, steps: 2}
            compare: {archs: [cross-attention, llava-linear], seeds: 1}
            """
        try recipe.write(toFile: scratch.path("compare.yaml"), atomically: true, encoding: .utf8)
        let arguments = ["compare", scratch.path("compare.yaml"), "--base", TinyVisionSetup.folder.appendingPathComponent("llama").path,
                         "--adapter", repositoryFile("adapters/world.yaml").path, "--out", scratch.path("compare"),
                         "--data-root", TinyVisionSetup.world.path, "--caption-samples", "2"]
        func encoderWeights(_ folder: String) throws -> [String: [Float]] {
            let tensors = try SafetensorsFile(path: folder + "/model.safetensors").tensors()
            return Dictionary(uniqueKeysWithValues: tensors.compactMap { name, tensor in
                name.range(of: "vision_model.").map { (String(name[$0.lowerBound...]), tensor.floats()) }
            })
        }
        try runVLM(arguments)
        let pretrained = try encoderWeights(encoder)
        for design in ["cross-attention", "llava-linear"] {
            #expect(try encoderWeights(scratch.path("compare/\(design)/seed-0/init")) != pretrained, "\(design): the fresh encoder")
        }
        try runVLM(arguments + ["--image-encoder", encoder])
        var results: [String: Date] = [:]
        for design in ["cross-attention", "llava-linear"] {
            #expect(try encoderWeights(scratch.path("compare/\(design)/seed-0/init")) == pretrained, "\(design): the pretrained encoder")
            let mark = try String(contentsOfFile: scratch.path("compare/\(design)/seed-0/image_encoder.txt"), encoding: .utf8)
            #expect(mark.hasPrefix("pretrained "))
            let result = scratch.path("compare/\(design)/seed-0/result.json")
            results[design] = try FileManager.default.attributesOfItem(atPath: result)[.modificationDate] as? Date
        }
        try runVLM(arguments + ["--image-encoder", encoder])
        for design in ["cross-attention", "llava-linear"] {
            let result = scratch.path("compare/\(design)/seed-0/result.json")
            #expect(try FileManager.default.attributesOfItem(atPath: result)[.modificationDate] as? Date == results[design],
                    "\(design): a run from the same encoder is reused")
        }
    }

    @Test("a bad regions line is named by file, line and field; a recipe without the heads is refused")
    func badInput() throws {
        let scratch = try Scratch()
        let lines = try String(contentsOf: TinyVisionSetup.world.appendingPathComponent("regions.jsonl"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        let broken = [lines[0], lines[1].replacingOccurrences(of: "\"box\": [", with: "\"box\": [\"x\", ")] + lines[2...]
        try FileManager.default.createDirectory(at: scratch.url.appendingPathComponent("world"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: scratch.url.appendingPathComponent("world/images"),
                                                   withDestinationURL: TinyVisionSetup.world.appendingPathComponent("images"))
        try (broken.joined(separator: "\n") + "\n").write(toFile: scratch.path("world/regions.jsonl"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(at: TinyVisionSetup.world.appendingPathComponent("regions-heldout.jsonl"),
                                         to: scratch.url.appendingPathComponent("world/regions-heldout.jsonl"))
        let recipe = try Self.recipe(in: scratch)
        let result = failure(["train", recipe, "--base", TinyVisionSetup.vision.path, "--out", scratch.path("run"),
                              "--data-root", scratch.path("world")])
        #expect(result?.status == 1)
        #expect(result?.message.contains("regions.jsonl:2: field \"regions[0].box\": expected [x0, y0, x1, y1]") == true,
                "\(result?.message ?? "no error")")

        let noHeads = try String(contentsOfFile: recipe, encoding: .utf8).replacingOccurrences(of: ", patchHeads", with: "")
        try noHeads.write(toFile: recipe, atomically: true, encoding: .utf8)
        let refused = failure(["train", recipe, "--base", TinyVisionSetup.vision.path, "--out", scratch.path("run2"),
                               "--data-root", TinyVisionSetup.world.path])
        #expect(refused?.status == 1)
        #expect(refused?.message.contains("encoder'.trainable: an encoder stage trains its patch-label heads") == true,
                "\(refused?.message ?? "no error")")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("run2/encoder")), "refused before any work")
    }

    /// Rank `rank` of `size` on its own: a sum leaves this rank's values as they are (as if every
    /// other rank added zeros) and records them.
    final class OneRankAlone: ProcessGroup {
        let rank: Int, size: Int
        private(set) var sums: [[Double]] = []
        init(rank: Int, size: Int) { (self.rank, self.size) = (rank, size) }
        func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {}
        func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws { sums.append(Array(values)) }
        func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) throws {}
        func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] { [bytes] }
        func barrier() throws {}
        func abort(status: Int32) -> Never { fatalError("abort(\(status))") }
    }

    @Test("on 2 ranks each evaluates half the held-out batches, and the summed counts give one process's figures")
    func evaluationSplitAcrossRanks() throws {
        let mllama = try MllamaForConditionalGeneration.load(directory: TinyVisionSetup.vision)
        let held = try RegionDataset(path: TinyVisionSetup.world.appendingPathComponent("regions-heldout.jsonl").path)
        let model = PatchLabelModel(model: mllama, classCounts: held.classes.classCounts, seed: 1)
        let processor = try MllamaImageProcessor(config: try MllamaImageProcessorConfig.load(
            from: TinyVisionSetup.vision.appendingPathComponent(MllamaImageProcessorConfig.fileName)))
        let grid = mllama.config.visionConfig.imageSize / mllama.config.visionConfig.patchSize
        let batchSize = 4, batches = (held.records.count + batchSize - 1) / batchSize
        try #require(batches >= 3, "the tiny world has \(held.records.count) held-out pictures")
        let alone = try EncoderStageEnvironment.patchAccuracy(model: model, dataset: held, processor: processor, grid: grid, batchSize: batchSize)
        // Each rank's local counts [loss sum, batches, covered patches, correct per field], as it passes them to the sum.
        let local = try (0..<2).map { rank -> [Double] in
            let group = OneRankAlone(rank: rank, size: 2)
            _ = try EncoderStageEnvironment.patchAccuracy(model: model, dataset: held, processor: processor, grid: grid,
                                                          batchSize: batchSize, group: group)
            return try #require(group.sums.first)
        }
        #expect(local[0][1] == Double((batches + 1) / 2) && local[1][1] == Double(batches / 2), "rank r takes every second batch from r")
        let total = zip(local[0], local[1]).map { $0 + $1 }
        #expect(abs(total[0] / total[1] - alone["loss"]!) <= 1e-6 * alone["loss"]!)
        for (field, name) in held.classes.fields.enumerated() {
            #expect(total[3 + field] / total[2] == alone["patch_accuracy/\(name)"]!, "\(name)")
        }
    }
}
