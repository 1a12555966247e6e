import Checkpoint
import Collectives
import Foundation
import Models
import Processing
import TensorCore
import Tokenization

/// Builds what a `reward`, `dpo` or `rejection` stage runs on (Docs/training.md, "Post-training").
///
/// - `reward`: the stage's input with a scalar head (``VisionRewardModel``), trained with the
///   Bradley–Terry loss on preference pairs; held-out pairwise accuracy, also with blank images.
///   Output: the Mllama folder plus `reward_head.safetensors`.
/// - `dpo`: the input is the policy and, frozen, the reference; pairs from preference files, or
///   on-policy (`on_policy: true`): K samples per prompt ranked by the reward model, written to
///   `STAGE/on-policy-pairs.jsonl` first, and the same from the held-out questions to
///   `STAGE/heldout-on-policy-pairs.jsonl`, which the evaluation ranks (`preference/on_policy/…`).
/// - `rejection`: K samples per prompt, filtered by correctness where there is a reference answer,
///   ranked by the reward model; the kept answers are written to `STAGE/kept.jsonl` (messages
///   JSONL) and the stage fine-tunes on them as SFT does.
///
/// Sampled candidates are kept in `STAGE/candidates/` batch by batch, so a rerun after a kill
/// samples only what is missing. Sampling runs in the environment's ``StageEnvironment/prepare``.
///
/// With `group` (a data-parallel job), the ranks split the batches of prompts to sample and the
/// held-out batches to evaluate, and gather the results in order; rank 0 writes the files.
public enum PostTrainingEnvironment {
    public static func make(stage: StageSettings, recipe: Recipe, input: URL, base: URL, group: (any ProcessGroup)? = nil,
                            runFolder: URL?, warn: @escaping @Sendable (String) -> Void = { _ in }) throws -> StageEnvironment {
        guard let mllama = try LoadedModel.load(directory: input).model as? MllamaForConditionalGeneration else {
            throw TrainingError("stage \(stage.name) (\(stage.kind.rawValue)) needs a vision model (mllama); \(input.path) is not one")
        }
        let post = stage.post
        let processor = try loadProcessor(directory: input, imageTokenID: mllama.config.imageTokenIndex)
        let samples = try SampleEncoder(processor: processor, maxLength: stage.maxLength, maxImages: stage.maxImages)
        let preferences = PreferenceEncoder(samples: samples, masksFormattingTokens: stage.kind == .dpo && post.maskFormattingTokens,
                                            truncatesRejected: stage.kind == .dpo && post.rejectedUpToDifference == true)
        // Held-out pairs are scored on whole responses, so their figures compare with TRL's either way.
        var wholeResponses = preferences
        wholeResponses.truncatesRejected = false
        let held = try TrainingEnvironment.datasets(stage.evalDatasets, recipe: recipe, field: "eval_datasets", stage: stage)
        let heldPreferences = held.filter { $0.dataset.format == .preference }, heldOther = held.filter { $0.dataset.format != .preference }
        let stageFolder = runFolder?.appendingPathComponent(stage.name)
        let writer = (group?.rank ?? 0) == 0
        func needFolder() throws -> URL {
            guard let stageFolder else { throw TrainingError("stage \(stage.name) (\(stage.kind.rawValue)) writes sampled data into its run folder; run it with vlm train") }
            if writer { try FileManager.default.createDirectory(at: stageFolder, withIntermediateDirectories: true) }
            return stageFolder
        }
        let sampled = SampledTraining()
        /// Samples the policy on `prompts` and ranks the candidates with the recipe's reward model,
        /// keeping the candidates in the stage folder (a rerun reuses whole batches).
        func sampleAndRank(_ prompts: [SamplingPrompt], in folder: URL) throws -> ([PromptCandidates], CandidateSampler.Figures) {
            let sampler = CandidateSampler(policy: mllama, rewardModel: try rewardModel(post, recipe: recipe, runFolder: runFolder, stage: stage),
                                           processor: processor, encoder: samples, settings: post, seed: stage.seed,
                                           folder: folder.appendingPathComponent("candidates"),
                                           identity: samplingIdentity(stage: stage, input: input,
                                                                      rewardModel: rewardModelFolder(post, recipe: recipe, runFolder: runFolder)))
            return try sampler.sample(prompts, group: group)
        }
        let probe = TrainingEnvironment.textProbe(processor: processor, vocabularySize: mllama.config.textConfig.llama.vocabSize)
        let textCheck = TrainingEnvironment.textOnlyLogitsCheck(model: mllama, probe: probe, base: base)
        let keepsText = !stage.trainable.contains("textModel")
        let saveMllama: (URL) throws -> Void = { folder in
            try mllama.save(to: folder)
            try VisionCheckpointFiles.write(from: input, config: mllama.config, to: folder)
        }
        func preferenceData(includesEdited: Bool) -> (StageSettings, Data?) throws -> any TrainingDataStream {
            { settings, saved in
                let sources = sampled.sources
                let position = try saved.map { try JSONDecoder().decode(DataPosition.self, from: $0) }
                var options = DataLoaderOptions(microBatchSize: settings.microBatchSize, seed: settings.seed, blankImages: settings.blankImages == true)
                options.maxSkipShare = settings.maxSkipShare
                return PreferenceStream(try PreferenceLoader(sources: sources, encoder: preferences, options: options, includesEdited: includesEdited,
                                                             resumingFrom: position, onSkip: { warn("skipped \($0)") }))
            }
        }
        let exactMatch: ((StageSettings) throws -> [String: Double])? = heldOther.isEmpty ? nil : { settings in
            try Evaluation(model: mllama, encoder: samples, datasets: heldOther.map(\.dataset), maxSamples: settings.evalSamples,
                           maxNewTokens: settings.evalMaxNewTokens, group: group).run()
        }

        switch stage.kind {
        case .reward:
            let training = try TrainingEnvironment.datasets(stage.datasets, recipe: recipe, field: "datasets", stage: stage)
            try requirePreferences(training, stage: stage, recipe: recipe, field: "datasets")
            sampled.sources = training
            let headURL = input.appendingPathComponent(VisionRewardModel.headFileName)
            let rewardModel = FileManager.default.fileExists(atPath: headURL.path) ? try VisionRewardModel.load(directory: input)
                : VisionRewardModel(model: mllama, seed: stage.seed)
            var environment = StageEnvironment(
                model: rewardModel, makeData: preferenceData(includesEdited: true),
                trainingSampleCount: { _ in training.reduce(0) { $0 + $1.dataset.count } },
                evaluate: heldPreferences.isEmpty ? nil : { settings in
                    var metrics: [String: Double] = [:]
                    for blank in [false, true] {
                        let statistics = try evaluatePreferences(heldPreferences, encoder: preferences, maxSamples: settings.evalSamples,
                                                                 blankImages: blank, includesEdited: false, group: group) { batch, layout in
                            let rewards = withNoGrad { rewardModel.rewards(batch.inputs).doubles() }
                            return RewardPairStatistics(chosen: Array(rewards[layout.chosenRows]), rejected: Array(rewards[layout.rejectedRows]))
                        }
                        for (key, value) in statistics.metrics { metrics[key + (blank ? "_blank_images" : "")] = value }
                        metrics["pairs"] = Double(statistics.chosen.count)
                    }
                    return metrics.filter { $0.value.isFinite }
                },
                saveModel: { folder in
                    try rewardModel.save(to: folder)
                    try VisionCheckpointFiles.write(from: input, config: mllama.config, to: folder)
                },
                textOnlyLogitsUnchanged: keepsText ? textCheck : nil)
            environment.makeStepper = { optimizer in
                RewardStepper(model: rewardModel, optimizer: optimizer, maxGradNorm: stage.maxGradNorm, margin: post.rewardMargin,
                              centerCoefficient: post.centerRewardsCoefficient)
            }
            return environment

        case .dpo:
            guard let reference = try LoadedModel.load(directory: input).model as? MllamaForConditionalGeneration else {
                throw TrainingError("\(input.path): not a vision model")
            }
            var prepare: (() throws -> Void)? = nil
            if post.onPolicy {
                let prompts = SamplingPrompt.prompts(in: try TrainingEnvironment.datasets(stage.datasets, recipe: recipe, field: "datasets", stage: stage).map(\.dataset),
                                                     limit: post.maxPrompts)
                prepare = {
                    let folder = try needFolder()
                    let (candidates, figures) = try sampleAndRank(prompts, in: folder)
                    let pairs = folder.appendingPathComponent("on-policy-pairs.jsonl")
                    let (written, anchors) = try OnPolicyData.writePairs(candidates, prompts: prompts, settings: post, to: pairs,
                                                                         write: writer, anchors: post.anchorUnpaired == true)
                    guard written > 0 else {
                        throw TrainingError("stage \(stage.name): no on-policy pair had a reward gap above \(post.pairRewardGap) among \(prompts.count) prompts; lower pair_reward_gap or sample more")
                    }
                    // The same construction on the held-out questions, from the same input policy: pairs
                    // of the kind the stage trains on, which the evaluation ranks (TRL's held-out split).
                    let heldPrompts = SamplingPrompt.prompts(in: heldOther.map(\.dataset), limit: stage.evalSamples)
                        .filter { $0.reference != nil }
                    var heldPairs = 0
                    if !heldPrompts.isEmpty {
                        let heldFolder = folder.appendingPathComponent("heldout")
                        if writer { try FileManager.default.createDirectory(at: heldFolder, withIntermediateDirectories: true) }
                        let (heldCandidates, _) = try sampleAndRank(heldPrompts, in: heldFolder)
                        let heldFile = folder.appendingPathComponent("heldout-on-policy-pairs.jsonl")
                        heldPairs = try OnPolicyData.writePairs(heldCandidates, prompts: heldPrompts, settings: post, to: heldFile, write: writer).pairs
                        if heldPairs > 0 { sampled.heldOutPairs = [DataSource(try Dataset(path: heldFile.path))] }
                    }
                    try group?.barrier()   // the pairs files are whole before the other ranks read them
                    sampled.sources = [DataSource(try Dataset(path: pairs.path))]
                    sampled.count = written + anchors
                    sampled.figures = ["sampling/pairs": Double(written), "sampling/prompts": Double(prompts.count),
                                       "sampling/anchors": post.anchorUnpaired == true ? Double(anchors) : .nan,
                                       "sampling/candidates_per_s": figures.candidatesPerSecond,
                                       "sampling/heldout_pairs": heldPrompts.isEmpty ? .nan : Double(heldPairs)].filter { $0.value.isFinite }
                }
            } else {
                let training = try TrainingEnvironment.datasets(stage.datasets, recipe: recipe, field: "datasets", stage: stage)
                try requirePreferences(training, stage: stage, recipe: recipe, field: "datasets")
                sampled.sources = training
                sampled.count = training.reduce(0) { $0 + $1.dataset.count }
            }
            let data = preferenceData(includesEdited: false)
            /// TRL's DPO figures of the policy against the reference on held-out pairs.
            func preferenceFigures(_ sources: [DataSource], maxSamples: Int) throws -> [String: Double] {
                try evaluatePreferences(sources, encoder: wholeResponses, maxSamples: maxSamples, blankImages: false, includesEdited: false,
                                        group: group) { batch, _ in
                    preferenceStatistics(policy: mllama, reference: reference, batch: batch, beta: post.dpoBeta)
                }.metrics
            }
            var environment = StageEnvironment(
                model: mllama, makeData: data, trainingSampleCount: { _ in sampled.count },
                evaluate: heldPreferences.isEmpty && heldOther.isEmpty ? nil : { settings in
                    var metrics = try exactMatch?(settings) ?? [:]
                    if !heldPreferences.isEmpty {
                        for (key, value) in try preferenceFigures(heldPreferences, maxSamples: settings.evalSamples) { metrics["preference/" + key] = value }
                    }
                    if !sampled.heldOutPairs.isEmpty {
                        for (key, value) in try preferenceFigures(sampled.heldOutPairs, maxSamples: 0) { metrics["preference/on_policy/" + key] = value }
                    }
                    return metrics.merging(sampled.figures) { a, _ in a }.filter { $0.value.isFinite }
                },
                saveModel: saveMllama, textOnlyLogitsUnchanged: keepsText ? textCheck : nil)
            environment.makeStepper = { optimizer in
                DPOStepper(policy: mllama, reference: reference, optimizer: optimizer, maxGradNorm: stage.maxGradNorm, beta: post.dpoBeta,
                           nllWeight: post.dpoNLLWeight, emaEvery: post.referenceEMAEvery, emaAlpha: post.referenceEMAAlpha)
            }
            environment.prepare = prepare
            return environment

        case .rejection:
            let folder = try needFolder()
            let sources = try TrainingEnvironment.datasets(stage.datasets, recipe: recipe, field: "datasets", stage: stage)
            let prompts = SamplingPrompt.prompts(in: sources.map(\.dataset), limit: post.maxPrompts)
            guard !prompts.isEmpty else { throw RecipeError(file: recipe.file, field: "\(stage.name).datasets", reason: "no prompts to sample (question, preference or conversation records)") }
            var environment = StageEnvironment(
                model: mllama,
                makeData: { settings, saved in
                    let position = try saved.map { try JSONDecoder().decode(DataPosition.self, from: $0) }
                    var options = DataLoaderOptions(microBatchSize: settings.microBatchSize, seed: settings.seed, blankImages: settings.blankImages == true)
                    options.maxSkipShare = settings.maxSkipShare
                    return LoaderStream(try DataLoader(sources: sampled.sources, encoder: samples, options: options, resumingFrom: position,
                                                       onSkip: { warn("skipped \($0)") }))
                },
                trainingSampleCount: { _ in sampled.count },
                evaluate: { settings in (try exactMatch?(settings) ?? [:]).merging(sampled.figures) { a, _ in a } },
                saveModel: saveMllama, textOnlyLogitsUnchanged: keepsText ? textCheck : nil)
            environment.prepare = {
                let (candidates, figures) = try sampleAndRank(prompts, in: folder)
                let kept = folder.appendingPathComponent("kept.jsonl")
                let selection = try OnPolicyData.writeKept(candidates, prompts: prompts, settings: post, to: kept, write: writer)
                guard selection.kept > 0 else {
                    throw TrainingError("stage \(stage.name): no candidate was kept (\(selection.candidates) sampled, \(selection.passed) passed the correctness check); sample more, or lower min_reward")
                }
                let figuresByName: [String: Double] = [
                    "sampling/prompts": Double(prompts.count), "sampling/candidates": Double(selection.candidates),
                    "sampling/kept": Double(selection.kept), "sampling/acceptance_rate": Double(selection.kept) / Double(max(1, selection.candidates)),
                    "sampling/correct_rate": selection.checked == 0 ? .nan : Double(selection.passed) / Double(selection.checked),
                    "sampling/mean_reward_all": selection.meanRewardAll, "sampling/mean_reward_kept": selection.meanRewardKept,
                    "sampling/candidates_per_s": figures.candidatesPerSecond,
                    "sampling/tokens_per_s": figures.candidatesTimed == 0 ? .nan : Double(figures.generatedTokens) / max(figures.seconds, 1e-9),
                ]
                // Figures that do not apply (no reference answers, nothing kept) are left out, never NaN.
                let summary = figuresByName.filter { $0.value.isFinite }
                if writer {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    try AtomicFile.write(try encoder.encode(summary), to: folder.appendingPathComponent("sampling.json"))
                }
                try group?.barrier()   // the kept set is whole before the other ranks read it
                sampled.sources = [DataSource(try Dataset(path: kept.path))]
                sampled.count = selection.kept
                sampled.figures = summary
            }
            return environment

        case .pretrain, .sft, .encoder:
            throw TrainingError("stage \(stage.name): \(stage.kind.rawValue) is not a post-training stage")
        }
    }

    /// What sampled candidates depend on: the stage's settings, and the sizes and modification
    /// times of the policy's and the reward model's weight files.
    static func samplingIdentity(stage: StageSettings, input: URL, rewardModel: URL) -> String {
        func stamp(_ folder: URL) -> String {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path))?.filter { $0.hasSuffix(".safetensors") }.sorted() ?? []
            return files.map { name -> String in
                let attributes = try? FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(name).path)
                let size = (attributes?[.size] as? NSNumber)?.int64Value ?? -1
                let date = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
                return "\(name):\(size):\(date)"
            }.joined(separator: ",")
        }
        return "settings \(stage.digest)\npolicy \(input.standardizedFileURL.path) \(stamp(input))\nreward model \(rewardModel.standardizedFileURL.path) \(stamp(rewardModel))\n"
    }

    /// The folder of the reward model a sampling stage ranks with.
    static func rewardModelFolder(_ post: PostTrainingSettings, recipe: Recipe, runFolder: URL?) -> URL {
        let name = post.rewardModel ?? ""
        if recipe.stage(named: name) != nil, let runFolder {
            return runFolder.appendingPathComponent(name).appendingPathComponent("model")
        }
        return recipe.url(of: DatasetSpec(path: name))
    }

    /// The reward model a sampling stage ranks with: the output of the recipe's stage of that name,
    /// or a folder relative to the data root.
    static func rewardModel(_ post: PostTrainingSettings, recipe: Recipe, runFolder: URL?, stage: StageSettings) throws -> VisionRewardModel {
        let name = post.rewardModel ?? ""
        let folder = rewardModelFolder(post, recipe: recipe, runFolder: runFolder)
        do { return try VisionRewardModel.load(directory: folder) } catch {
            throw RecipeError(file: recipe.file, field: "\(stage.name).reward_model", reason: "\(name): \(error)")
        }
    }

    static func requirePreferences(_ sources: [DataSource], stage: StageSettings, recipe: Recipe, field: String) throws {
        for (index, source) in sources.enumerated() where source.dataset.format != .preference {
            throw RecipeError(file: recipe.file, field: "\(stage.name).\(field)[\(index)]",
                              reason: "\(source.dataset.path) is \(source.dataset.format.rawValue) data; a \(stage.kind.rawValue) stage trains on preference pairs (prompt, chosen, rejected)")
        }
    }
}

/// Figures over held-out preference records, in file order (`maxSamples` records at most; 0: all).
/// With `group`, rank `r` of N measures batches `r`, `r + N`, … and the figures are gathered in
/// batch order on every rank.
func evaluatePreferences<Statistics>(_ sources: [DataSource], encoder: PreferenceEncoder, maxSamples: Int, blankImages: Bool,
                                     includesEdited: Bool, group: (any ProcessGroup)? = nil,
                                     _ measure: (TrainingBatch, PreferenceLayout) throws -> Statistics) throws -> Statistics
    where Statistics: MergeableStatistics & Codable {
    let options = DataLoaderOptions(microBatchSize: 8, seed: 0, shuffle: false, epochs: 1, blankImages: blankImages, prefetchBatches: 0, maxSkipShare: 1)
    let loader = try PreferenceLoader(sources: sources.map { DataSource($0.dataset) }, encoder: encoder, options: options,
                                      includesEdited: includesEdited)
    var byBatch: [Int: Statistics] = [:]
    var records = 0, index = -1
    while let batch = try loader.next(), maxSamples == 0 || records < maxSamples {
        index += 1
        let layout = PreferenceLayout(batch: batch)
        records += layout.pairs
        if let group, index % group.size != group.rank { continue }
        byBatch[index] = try measure(batch, layout)
    }
    let all = try group.map { try $0.gatherInIndexOrder(byBatch) } ?? byBatch.sorted { $0.key < $1.key }.map(\.value)
    guard var total = all.first else { throw TrainingError("the held-out preference data has no usable records") }
    for figures in all.dropFirst() { total.append(figures) }
    return total
}

/// Statistics that add up over batches.
protocol MergeableStatistics { mutating func append(_ other: Self) }

/// What a stage's training data is, known once its ``StageEnvironment/prepare`` has run (a
/// sampling stage builds it there): the sources, their record count, held-out pairs, and sampling
/// figures for the evaluation.
private final class SampledTraining {
    var sources: [DataSource] = []
    /// An on-policy DPO stage's held-out pairs, built from its evaluation questions.
    var heldOutPairs: [DataSource] = []
    var count = 0
    var figures: [String: Double] = [:]
}
extension RewardPairStatistics: MergeableStatistics {}
extension PreferenceStatistics: MergeableStatistics {}
