import Checkpoint
import Collectives
import Foundation
import Layers
import Media
import Models
import Processing
import TensorCore
import Tokenization

/// A ``DataLoader`` seen as the trainer's endless stream of micro-batches.
final class LoaderStream: TrainingDataStream {
    let loader: DataLoader
    private(set) var dataWaitSeconds = 0.0

    init(_ loader: DataLoader) { self.loader = loader }

    func nextBatch() throws -> TrainingBatch {
        guard let batch = try loader.next() else { throw TrainingError("the training data ran out (no epoch limit was expected)") }
        dataWaitSeconds += batch.dataWaitSeconds
        return batch
    }

    func savePosition() throws -> Data { try JSONEncoder().encode(loader.position) }
    var samplesSeen: Int { loader.samplesSeen }
    var skipCounts: [String: Int] {
        Dictionary(uniqueKeysWithValues: SkipCause.allCases.compactMap { cause in
            loader.skipCounts[cause] > 0 ? (cause.rawValue, loader.skipCounts[cause]) : nil })
    }
}

/// The processor of a model folder: its tokenizer (with `<|image|>` at the config's id) and its
/// image processor.
///
/// A text-only model folder has no `preprocessor_config.json`: its processor gets Llama 3.2's
/// published image settings, and `<|image|>` at `imageTokenID` (past the vocabulary; never used,
/// since its records are encoded without images).
public func loadProcessor(directory: URL, imageTokenID: Int) throws -> MllamaProcessor {
    var tokenizerURL: URL? = nil
    for name in ["tokenizer.json", "tokenizer.json.zst", "tokenizer.model"] {
        let candidate = directory.appendingPathComponent(name)
        if FileManager.default.fileExists(atPath: candidate.path) { tokenizerURL = candidate; break }
    }
    guard let tokenizerURL else {
        throw CheckpointError(file: directory.path, reason: "no tokenizer.json, tokenizer.json.zst or tokenizer.model")
    }
    // With the tokenizer_config.json beside it: the files decide BOS, as in transformers.
    let tokenizer = try Tokenizer(checkpointFile: tokenizerURL, extraSpecialTokens: ["<|image|>": imageTokenID])
    let configURL = directory.appendingPathComponent(MllamaImageProcessorConfig.fileName)
    // A LLaVA folder's image processor is CLIP's (``loadCLIPImageProcessor(directory:)``); this
    // processor then only tokenizes.
    let clip = try loadCLIPImageProcessor(directory: directory)
    let isMllama = FileManager.default.fileExists(atPath: configURL.path) && clip == nil
    let config = isMllama ? try MllamaImageProcessorConfig.load(from: configURL) : MllamaImageProcessorConfig.published()
    var processor = try MllamaProcessor(imageProcessor: MllamaImageProcessor(config: config), tokenizer: tokenizer)
    // Padding is masked out, but its id must be a row of the embedding table.
    processor.padTokenID = tokenizer.specialTokenID("<|finetune_right_pad_id|>")
        ?? (try? GenerationConfig.load(from: directory.appendingPathComponent(GenerationConfig.fileName)))?.padTokenId ?? 0
    return processor
}

/// The CLIP image processor of a LLaVA model folder: its `preprocessor_config.json` when that is
/// a `CLIPImageProcessor` or `LlavaImageProcessor` one, else nil.
/// - Throws: ``CheckpointError`` naming the file when it says CLIP but cannot be used.
public func loadCLIPImageProcessor(directory: URL) throws -> CLIPImageProcessor? {
    let url = directory.appendingPathComponent(CLIPImageProcessorConfig.fileName)
    guard let data = FileManager.default.contents(atPath: url.path),
          let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
          let type = object["image_processor_type"] as? String,
          type.hasPrefix("CLIPImageProcessor") || type.hasPrefix("LlavaImageProcessor") else { return nil }
    do { return try CLIPImageProcessor(config: try CLIPImageProcessorConfig.load(from: url)) } catch let error as ProcessingError {
        throw CheckpointError(file: url.path, reason: error.message)
    }
}

/// Builds what a stage of `vlm train` runs on: the model from the stage's input folder, its data
/// from the recipe, held-out evaluation, saving (weights, config and the tokenizer and processor
/// files), and the check that the text-only logits still equal the base model's.
public enum TrainingEnvironment {
    /// Files of a model folder that describe its tokenizer, processor and generation settings and
    /// are carried from a stage's input to its output unchanged.
    static let supportFiles = ["tokenizer.json", "tokenizer.json.zst", "tokenizer.model", "tokenizer_config.json",
                               "special_tokens_map.json", "preprocessor_config.json", "processor_config.json",
                               "generation_config.json", "chat_template.json", "chat_template.jinja"]

    /// - Parameters:
    ///   - group: the ranks that share the evaluation (nil: this process alone).
    ///   - runFolder: the run folder (post-training stages write sampled data and find a recipe's
    ///     reward stage there).
    public static func make(stage: StageSettings, recipe: Recipe, input: URL, base: URL, group: (any ProcessGroup)? = nil,
                            runFolder: URL? = nil,
                            warn: @escaping @Sendable (String) -> Void = { _ in }) throws -> StageEnvironment {
        if [.reward, .dpo, .rejection].contains(stage.kind) {
            return try PostTrainingEnvironment.make(stage: stage, recipe: recipe, input: input, base: base, group: group,
                                                   runFolder: runFolder, warn: warn)
        }
        if stage.kind == .encoder { return try EncoderStageEnvironment.make(stage: stage, recipe: recipe, input: input, base: base, group: group) }
        let loaded = try LoadedModel.load(directory: input)
        let model = loaded.model
        let adapted = try attachLanguageModelAdapters(to: model, stage: stage)
        let mllama = model as? MllamaForConditionalGeneration
        let layout: ModelDataLayout
        do { layout = try ModelDataLayout(model) } catch { throw TrainingError("\(input.path): \(error)") }
        let processor = try loadProcessor(directory: input, imageTokenID: layout.imageTokenID)
        // A text model reads every record without its images: the no-vision baseline.
        // LLaVA's images go through its CLIP processor.
        let clipImages = try model is LlavaForConditionalGeneration ? loadCLIPImageProcessor(directory: input) : nil
        if model is LlavaForConditionalGeneration && clipImages == nil {
            throw TrainingError("\(input.path): a llava model needs a CLIP preprocessor_config.json (image_processor_type CLIPImageProcessor or LlavaImageProcessor)")
        }
        let encoder = try layout.sampleEncoder(processor: processor, maxLength: stage.maxLength, maxImages: stage.maxImages,
                                               clipImages: clipImages)
        let training = try datasets(stage.datasets, recipe: recipe, field: "datasets", stage: stage)
        let held = try datasets(stage.evalDatasets, recipe: recipe, field: "eval_datasets", stage: stage)

        let makeData: (StageSettings, Data?) throws -> any TrainingDataStream = { settings, saved in
            let position = try saved.map { try JSONDecoder().decode(DataPosition.self, from: $0) }
            var options = DataLoaderOptions(microBatchSize: settings.microBatchSize, seed: settings.seed, blankImages: settings.blankImages == true)
            options.maxSkipShare = settings.maxSkipShare
            return LoaderStream(try DataLoader(sources: training, encoder: encoder, options: options, resumingFrom: position,
                                               onSkip: { warn("skipped \($0)") }))
        }
        let evaluate: ((StageSettings) throws -> [String: Double])? = held.isEmpty ? nil : { settings in
            try Evaluation(model: model, encoder: encoder, datasets: held.map(\.dataset), maxSamples: settings.evalSamples,
                           maxNewTokens: settings.evalMaxNewTokens, group: group).run()
        }
        // The drop-in promise holds for a vision model whose text model stays frozen (LLaVA calls it `languageModel`).
        let keepsTextModel = layout.readsImages && !stage.trainingGroups.contains("textModel") && !stage.trainingGroups.contains("languageModel")
            && adapted.isEmpty
        let probe = textProbe(processor: processor, vocabularySize: layout.textVocabulary)
        return StageEnvironment(
            model: model, makeData: makeData,
            trainingSampleCount: { _ in training.reduce(0) { $0 + $1.dataset.count } },
            evaluate: evaluate,
            saveModel: { folder in
                if !adapted.isEmpty {
                    // PEFT's files for the text tower, then a plain checkpoint with the adapters merged.
                    guard let tower = model as? any PEFTAdaptable else {
                        throw TrainingError("\(stage.name): \(type(of: model)) has no Llama text tower to write a PEFT adapter for")
                    }
                    // base_model_name_or_path must be a folder transformers loads as the model PEFT
                    // wraps: a Llama's input, or LLaVA's (its adapters are keyed by the LLaVA model);
                    // the token-stream and Mllama models' Llama is not a folder of its own.
                    let wrapsInput = model is LlamaForCausalLM || model is LlavaForConditionalGeneration
                    // LLaVA's stage 2 trains its projector beside the adapters: PEFT's modules_to_save,
                    // so that base + adapter is the trained model.
                    let savedModules = model is LlavaForConditionalGeneration
                        ? stage.trainable.flatMap { model.parameterPatterns(forGroup: $0) ?? [] }.map { $0.replacingOccurrences(of: ".**", with: "") }
                        : []
                    let adapterFolder = folder.appendingPathComponent(PEFTAdapter.stageSubfolder)
                    try PEFTAdapter.write(from: tower, configuration: stage.languageModelTraining.lora,
                                          baseModel: wrapsInput ? input.path : nil, savedModules: savedModules, to: adapterFolder)
                    model.mergeLowRankAdapters()
                }
                try loaded.save(to: folder)
                // A vision checkpoint gets the files transformers' AutoProcessor needs (the tokenizer
                // with <|image|>, its config and chat template, the image processor's config).
                if let mllama { try VisionCheckpointFiles.write(from: input, config: mllama.config, to: folder) }
                else { try copySupportFiles(from: input, to: folder) }
            },
            textOnlyLogitsUnchanged: !keepsTextModel ? nil : textOnlyLogitsCheck(model: model, probe: probe, base: base))
    }

    /// The drop-in check every stage runs after training: whether `model`'s logits for the text-only
    /// `probe` equal, bit for bit, those of the model folder `base`.
    static func textOnlyLogitsCheck(model: any TrainableLanguageModel, probe: Tensor, base: URL) -> () throws -> Bool {
        {
            let now = withNoGrad { model.logits(ModelInputs(inputIDs: probe)).floats() }
            let reference = try LoadedModel.load(directory: base).model
            return now == withNoGrad { reference.logits(ModelInputs(inputIDs: probe)).floats() }
        }
    }

    /// The recipe's datasets, opened and indexed before any work starts.
    static func datasets(_ specs: [DatasetSpec], recipe: Recipe, field: String, stage: StageSettings) throws -> [DataSource] {
        try specs.enumerated().map { index, spec in
            do {
                let format = try spec.format.map { name -> DatasetFormat in
                    guard let format = DatasetFormat(rawValue: name) else {
                        throw RecipeError(file: recipe.file, field: "\(stage.name).\(field)[\(index)].format",
                                          reason: "'\(name)' is not a dataset format; one of \(DatasetFormat.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    return format
                }
                return DataSource(try Dataset(path: recipe.url(of: spec).path, format: format), weight: spec.weight)
            } catch let error as RecipeError { throw error } catch {
                throw RecipeError(file: recipe.file, field: "\(stage.name).\(field)[\(index)]", reason: "\(spec.path): \(error)")
            }
        }
    }

    /// A fixed text-only input for comparing a model's text path with the base model's.
    static func textProbe(processor: MllamaProcessor, vocabularySize: Int) -> Tensor {
        let ids = processor.tokenizer.encode("The drop-in check: with no image, these logits are the text model's.", allowSpecial: false)
            .filter { $0 < vocabularySize }
        return Tensor(indices: ids.isEmpty ? [0] : ids, shape: [1, max(1, ids.count)])
    }

    static func copySupportFiles(from source: URL, to destination: URL) throws {
        for name in supportFiles {
            let file = source.appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: file.path) else { continue }
            try AtomicFile.write(data, to: destination.appendingPathComponent(name))
        }
    }
}
