import Checkpoint
import Collectives
import Foundation
import Models
import Processing
import TensorCore

/// What an `encoder` stage runs on: the fusion model's image encoder with patch-label heads
/// (``PatchLabelModel``), a regions file's images and labels, held-out patch accuracy, and the
/// fusion model saved without the heads.
///
/// Meta pretrained Llama 3.2 Vision's image encoder before the adapters were trained; a model
/// built from nothing (the built-in world's) gets the same start from this stage: the encoder
/// learns to name what covers each patch before any text reads it (Docs/training.md).
enum EncoderStageEnvironment {
    /// - Parameter group: the ranks that share the held-out evaluation (nil: this process alone).
    static func make(stage: StageSettings, recipe: Recipe, input: URL, base: URL, group: (any ProcessGroup)? = nil) throws -> StageEnvironment {
        guard let mllama = try LoadedModel.load(directory: input).model as? MllamaForConditionalGeneration else {
            throw TrainingError("\(stage.name): an encoder stage trains a Llama 3.2 Vision (mllama) model's image encoder; \(input.path) is not one")
        }
        guard stage.datasets.count == 1 else {
            throw RecipeError(file: recipe.file, field: "\(stage.name).datasets", reason: "an encoder stage reads one regions file")
        }
        func regions(_ spec: DatasetSpec, field: String) throws -> RegionDataset {
            do { return try RegionDataset(path: recipe.url(of: spec).path) } catch {
                throw RecipeError(file: recipe.file, field: "\(stage.name).\(field)", reason: "\(spec.path): \(error)")
            }
        }
        let training = try regions(stage.datasets[0], field: "datasets")
        let heldOut = try stage.evalDatasets.map { try regions($0, field: "eval_datasets") }
        let classes = training.classes
        let model = PatchLabelModel(model: mllama, classCounts: classes.classCounts, seed: stage.seed)
        let processor = try MllamaImageProcessor(config: try MllamaImageProcessorConfig.load(
            from: input.appendingPathComponent(MllamaImageProcessorConfig.fileName)))
        let vision = mllama.config.visionConfig
        let grid = vision.imageSize / vision.patchSize
        let layout = try ModelDataLayout(mllama)
        let probe = TrainingEnvironment.textProbe(processor: try loadProcessor(directory: input, imageTokenID: layout.imageTokenID),
                                                  vocabularySize: layout.textVocabulary)

        var environment = StageEnvironment(
            model: model,
            makeData: { settings, saved in
                PatchLabelStream(dataset: training, processor: processor, grid: grid, microBatchSize: settings.microBatchSize,
                                 seed: settings.seed, samplesSeen: try saved.map(PatchLabelStream.position) ?? 0)
            },
            trainingSampleCount: { _ in training.records.count },
            evaluate: heldOut.isEmpty ? nil : { settings in
                var held = RegionDataset(records: heldOut.flatMap(\.records), classes: classes)
                if settings.evalSamples > 0 { held.records = Array(held.records.prefix(settings.evalSamples)) }
                return try patchAccuracy(model: model, dataset: held, processor: processor, grid: grid, batchSize: settings.microBatchSize, group: group)
            },
            saveModel: { folder in
                try mllama.save(to: folder)
                try VisionCheckpointFiles.write(from: input, config: mllama.config, to: folder)
            },
            // The stage writes only encoder weights; the check is the same as every stage's.
            textOnlyLogitsUnchanged: TrainingEnvironment.textOnlyLogitsCheck(model: mllama, probe: probe, base: base))
        environment.makeStepper = { optimizer in
            PatchLabelStepper(model: model, optimizer: optimizer, maxGradNorm: stage.maxGradNorm, fieldCount: classes.fields.count)
        }
        return environment
    }

    /// Held-out figures: `loss`, and per field the share of patches inside a region whose class
    /// the heads name (`patch_accuracy/FIELD`), with their mean (`patch_accuracy`). With `group`,
    /// each rank takes every N-th batch and the counts are summed, so every rank gets the figures.
    static func patchAccuracy(model: PatchLabelModel, dataset: RegionDataset, processor: MllamaImageProcessor, grid: Int,
                              batchSize: Int, group: (any ProcessGroup)? = nil) throws -> [String: Double] {
        let fields = dataset.classes.fields.count
        var correct = [Int](repeating: 0, count: fields), covered = 0, lossSum = 0.0, batches = 0
        for (index, start) in stride(from: 0, to: dataset.records.count, by: max(1, batchSize)).enumerated() {
            if let group, index % group.size != group.rank { continue }
            let records = Array(dataset.records[start..<min(start + batchSize, dataset.records.count)])
            let batch = try patchLabelBatch(records, classes: dataset.classes, processor: processor, grid: grid)
            let (logits, loss) = withNoGrad {
                (model.patchLogits(batch.inputs).map { $0.floats() }, patchLabelLoss(model: model, batch: batch, fieldCount: fields).item())
            }
            lossSum += loss
            batches += 1
            let targets = batch.labels.integers()
            let patches = targets.count / fields
            for patch in 0..<patches where (0..<fields).contains(where: { targets[patch * fields + $0] > 0 }) {
                covered += 1
                for field in 0..<fields {
                    let classes = dataset.classes.classCounts[field]
                    let row = logits[field][(patch * classes)..<((patch + 1) * classes)]
                    let predicted = row.indices.max { row[$0] < row[$1] }! - patch * classes
                    if predicted == targets[patch * fields + field] { correct[field] += 1 }
                }
            }
        }
        if let group {
            let sums = try group.sum([lossSum, Double(batches), Double(covered)] + correct.map(Double.init))
            (lossSum, batches, covered) = (sums[0], Int(sums[1]), Int(sums[2]))
            correct = sums[3...].map { Int($0) }
        }
        var metrics: [String: Double] = ["loss": lossSum / Double(max(1, batches)), "samples": Double(dataset.records.count)]
        for (field, name) in dataset.classes.fields.enumerated() {
            metrics["patch_accuracy/\(name)"] = Double(correct[field]) / Double(max(1, covered))
        }
        metrics["patch_accuracy"] = Double(correct.reduce(0, +)) / Double(max(1, covered * fields))
        return metrics
    }
}
