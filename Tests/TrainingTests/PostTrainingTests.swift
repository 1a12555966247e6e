import Foundation
import Layers
import Models
import Testing
import TensorCore
import Tokenization
@testable import Training
import _TestSupport

/// Every parameter of `module` as a float64 copy that requires gradients.
private func float64Copies(_ module: Module) {
    for (_, slot) in module.namedParameters() {
        let converted = slot.tensor!.converted(to: .float64).detached()
        converted.requiresGrad = true
        slot.tensor = converted
    }
}

/// A preference micro-batch from ``tinyBatch(samples:dtype:)``: rows 0..<P chosen, P..<2P
/// rejected, ids tagged as the preference loader tags them.
private func tinyPreferenceBatch(pairs: Int, dtype: DType = .float32) -> TrainingBatch {
    var batch = tinyBatch(samples: Array(0..<(2 * pairs)), dtype: dtype)
    batch.sampleIDs = (0..<pairs).map { "p\($0)#chosen" } + (0..<pairs).map { "p\($0)#rejected" }
    return batch
}

@Suite("Post-training: the reward model, DPO through the model, sampling")
struct PostTrainingTests {
    /// A preference record's prompt: one picture and a colour question.
    static let colourPrompt = #""prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}]"#

    /// The reward of a row is the head applied to the hidden state of its last real token: the
    /// same number the full (B, T) score map has there, padding never read.
    @Test("sampled datasets name their images relative to the file, as every dataset format does")
    func relativeImagePaths() {
        let image = URL(fileURLWithPath: "/data/world/images/000001.png")
        #expect(OnPolicyData.relativePath(of: image, from: URL(fileURLWithPath: "/data/runs/default/run/rejection"))
                == "../../../../world/images/000001.png")
        #expect(OnPolicyData.relativePath(of: image, from: URL(fileURLWithPath: "/data/world")) == "images/000001.png")
        let resolved = URL(fileURLWithPath: "/data/runs/x").appendingPathComponent(
            OnPolicyData.relativePath(of: image, from: URL(fileURLWithPath: "/data/runs/x"))).standardizedFileURL
        #expect(resolved.path == image.path)
    }

    @Test("the reward is read at each row's last non-padding token")
    func rewardAtLastRealToken() {
        let rewardModel = VisionRewardModel(model: tinyTrainingModel(), seed: 3)
        let batch = tinyBatch(samples: [0, 1, 2])
        let rewards = withNoGrad { rewardModel.rewards(batch.inputs).doubles() }
        let scores = withNoGrad { rewardModel.score(rewardModel.model.hiddenStates(batch.inputs)).doubles() }   // (B·T)
        let mask = batch.inputs.attentionMask!.integers(), t = batch.inputs.length
        for row in 0..<3 {
            let last = (0..<t).last { mask[row * t + $0] == 1 }!
            #expect(rewards[row] == scores[row * t + last])
        }
    }

    @Test("the reward model's gradients (head, cross-attention, image encoder) match central differences (float64)")
    func rewardModelGradients() {
        let rewardModel = VisionRewardModel(model: tinyTrainingModel(seed: 2), seed: 4)
        float64Copies(rewardModel)
        let batch = tinyPreferenceBatch(pairs: 2, dtype: .float64)
        let named = Dictionary(uniqueKeysWithValues: rewardModel.parameters())
        let checked = ["score.weight", "model.language_model.model.layers.1.cross_attn_attn_gate",
                       "model.language_model.model.layers.1.cross_attn.k_proj.weight", "model.multi_modal_projector.bias",
                       "model.vision_model.gated_positional_embedding.gate"].map { named[$0]! }
        let failure = gradientCheck(checked, tolerance: 1e-6) { _ in
            let rewards = rewardModel.rewards(batch.inputs)
            return rewardPairLoss(chosen: rewards.slice(axis: 0, 0..<2), rejected: rewards.slice(axis: 0, 2..<4), margins: [0.2, 0],
                                  centerCoefficient: 0.1, normalizer: 2)
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    @Test("the DPO loss's gradients through the policy match central differences (float64), NLL term included")
    func dpoGradientsThroughTheModel() {
        let policy = tinyTrainingModel(seed: 5)
        float64Copies(policy)
        let batch = tinyPreferenceBatch(pairs: 2, dtype: .float64)
        let named = Dictionary(uniqueKeysWithValues: policy.parameters())
        let checked = ["language_model.model.layers.1.cross_attn_mlp_gate", "language_model.model.layers.1.cross_attn.q_proj.weight",
                       "multi_modal_projector.weight"].map { named[$0]! }
        let reference = [-3.0, -2.5, -4.0, -3.5]
        let failure = gradientCheck(checked, tolerance: 1e-6) { _ in
            let tokens = labelLogProbabilities(model: policy, inputs: batch.inputs, labels: batch.labels)
            return directPreferenceLoss(tokenLogProbabilities: tokens, referenceSums: reference, beta: 0.5, nllWeight: 0.2,
                                        pairNormalizer: 2, chosenTokenNormalizer: DPOStepper.chosenTokenCount(batch)).loss
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    /// The label log-probabilities summed per row are minus the causal-LM loss's per-row sums: the
    /// DPO path and the SFT path read the same positions.
    @Test("summed label log-probabilities equal the negated summed causal-LM loss")
    func labelLogProbabilitiesAgreeWithTheLoss() {
        let model = tinyTrainingModel()
        let batch = tinyBatch(samples: [3, 4])
        let sums = withNoGrad { labelLogProbabilities(model: model, inputs: batch.inputs, labels: batch.labels).sum().item() }
        let loss = withNoGrad { causalLanguageModelLoss(model: model, inputs: batch.inputs, labels: batch.labels, normalizer: 1).item() }
        #expect(abs(sums + loss) < 1e-4 * abs(loss))
    }

    /// Only learned positions go through the LM head; each value is still the full forward's
    /// log-softmax at that position, and every unlearned position (padding, the first token) is 0.
    @Test("label log-probabilities from the learned positions alone equal the full forward's, 0 elsewhere")
    func labelLogProbabilitiesOfLearnedPositionsOnly() {
        let model = tinyTrainingModel(seed: 2)
        let batch = tinyBatch(samples: [3, 4, 6])
        let (b, t) = (batch.inputs.batchSize, batch.inputs.length)
        let values = withNoGrad { labelLogProbabilities(model: model, inputs: batch.inputs, labels: batch.labels).doubles() }
        let logits = withNoGrad { model.logits(batch.inputs) }                                // (B, T, V)
        let v = logits.shape[2], all = logits.doubles(), labels = batch.labels.integers()
        var unlearned = 0
        for row in 0..<b {
            for column in 0..<(t - 1) {
                let value = values[row * (t - 1) + column], target = labels[row * t + column + 1]
                guard target != SampleEncoder.ignoreIndex else { unlearned += 1; #expect(value == 0); continue }
                let scores = all[((row * t + column) * v)..<((row * t + column + 1) * v)]
                let top = scores.max()!
                let expected = scores[scores.startIndex + target] - top - log(scores.reduce(0) { $0 + exp($1 - top) })
                #expect(abs(value - expected) < 1e-5, "row \(row), position \(column): \(value) against \(expected)")
            }
        }
        #expect(unlearned > b, "the batch has padding to skip")
    }

    /// A DPO step runs the frozen layers before the first cross-attention layer once for the policy
    /// and the reference; continuing from those states gives the bits of the whole forward pass.
    @Test("continuing from the shared frozen prefix gives the full forward's bits; a trained or different prefix is not shared")
    func frozenPrefixSharing() throws {
        let policy = tinyTrainingModel(seed: 4), reference = tinyTrainingModel(seed: 4)
        try makeTrainable(policy, groups: ["visionModel", "projector", "crossAttentionLayers"])
        let batch = tinyPreferenceBatch(pairs: 2)
        #expect(policy.sharesFrozenPrefix(with: reference) && !policy.sharesFrozenPrefix(with: tinyTrainingModel(seed: 5)))
        let prefix = try #require(withNoGrad { policy.frozenPrefixStates(batch.inputs) })
        #expect(prefix.nextLayer == 1)
        for model in [policy, reference] {
            let whole = withNoGrad { model.hiddenStates(batch.inputs) }.doubles()
            let continued = withNoGrad { model.hiddenStates(batch.inputs, after: prefix) }.doubles()
            #expect(whole.map(\.bitPattern) == continued.map(\.bitPattern))
        }
        // The recipes' set trains `<|image|>`'s embedding row: the prefix is then the policy's own.
        try makeTrainable(policy, groups: ["visionModel", "projector", "crossAttentionLayers", "extraEmbeddingRows"])
        #expect(withNoGrad { policy.frozenPrefixStates(batch.inputs) } == nil)
    }

    @Test("a DPO step with a zero-EMA reference trains, reports TRL's figures, and the EMA moves the reference toward the policy")
    func dpoStepAndEMA() throws {
        let policy = tinyTrainingModel(seed: 1), reference = tinyTrainingModel(seed: 1)
        try makeTrainable(policy, groups: ["crossAttentionLayers"])
        let optimizer = AdamW(module: policy, learningRate: 0.01)
        let stepper = DPOStepper(policy: policy, reference: reference, optimizer: optimizer, maxGradNorm: 1, beta: 0.1, nllWeight: 0.2,
                                 emaEvery: 1, emaAlpha: 0.5)
        let batch = tinyPreferenceBatch(pairs: 2)
        let report = stepper.step([batch], learningRate: 0.01)
        #expect(report.isFinite)
        // Policy = reference before the first update: every implicit reward is 0, the loss log 2 plus the NLL term.
        #expect(abs(stepper.lastStepMetrics["rewards/margins"]!) < 1e-6 && stepper.lastStepMetrics["rewards/accuracies"] == 0)
        let name = "language_model.model.layers.1.cross_attn.q_proj.weight"
        let before = Dictionary(uniqueKeysWithValues: reference.parameters())[name]!.doubles()
        let now = Dictionary(uniqueKeysWithValues: policy.parameters())[name]!.doubles()
        #expect(before != now, "the step moved the policy")
        stepper.didFinishStep(1)
        let after = Dictionary(uniqueKeysWithValues: reference.parameters())[name]!.doubles()
        for i in 0..<after.count { #expect(abs(after[i] - (0.5 * before[i] + 0.5 * now[i])) < 1e-6) }
        #expect(stepper.checkpointTensors()[name] != nil, "the EMA reference is saved with the run checkpoint")
    }

    /// Sharing one image encoding across a prompt's K rows must change nothing: greedy decoding
    /// with the shared decoder equals decoding each row with its own copy of the pixels.
    @Test("sampling K rows per prompt from one image encoding equals encoding the image for every row")
    func sharedImageDecoderIsExact() {
        let model = tinyTrainingModel(seed: 7)
        let k = 3
        let pixels = Tensor.concatenate([randomFloats([1, 1, 2, 3, 28, 28], seed: 1), randomFloats([1, 1, 2, 3, 28, 28], seed: 2)], axis: 0)
        let prompts = [[24, 3, 5, 7], [24, 9, 2]]
        let masks = prompts.map { ids in Tensor(indices: ids.flatMap { _ in [1, 0] }, shape: [ids.count, 1, 2]) }
        let ratio = Tensor(indices: [1, 1], shape: [2, 1]), tiles = Tensor(indices: [1, 0, 1, 0], shape: [2, 1, 2])
        let shared = MllamaSharedImageDecoder(model: model, pixelValues: pixels, aspectRatioIds: ratio, aspectRatioMask: tiles,
                                              crossAttentionMask: MllamaForConditionalGeneration.leftPaddedCrossAttentionMask(masks.flatMap { Array(repeating: $0, count: k) }),
                                              samplesPerPrompt: k)
        let rows = prompts.flatMap { Array(repeating: $0, count: k) }
        let sampling = SamplingOptions(temperature: 1, topP: 0.9, seed: 5)
        let fromShared = generate(with: shared, prompts: rows, maxNewTokens: 5, sampling: sampling)
        let repeatedPixels = Tensor.concatenate((0..<2).flatMap { u in Array(repeating: pixels.slice(axis: 0, u..<(u + 1)), count: k) }, axis: 0)
        let separate = model.conditioned(pixelValues: repeatedPixels.contiguous(), aspectRatioIds: Tensor(indices: Array(repeating: 1, count: 6), shape: [6, 1]),
                                         aspectRatioMask: Tensor(indices: Array((0..<6).map { _ in [1, 0] }.joined()), shape: [6, 1, 2]),
                                         crossAttentionMask: MllamaForConditionalGeneration.leftPaddedCrossAttentionMask(masks.flatMap { Array(repeating: $0, count: k) }))
        #expect(fromShared == generate(with: separate, prompts: rows, maxNewTokens: 5, sampling: sampling))
        #expect(Set(fromShared[0..<3].map { $0 }).count > 1, "K samples of one prompt differ (temperature 1)")
    }

    /// The shared decoder encodes and prefills each prompt once and copies its caches to the prompt's
    /// K rows: its logits must equal each row decoded alone, at the prompt and after it.
    @Test("the shared decoder's logits at the prompt and at every generated token equal each row's own")
    func sharedImageDecoderLogits() {
        let model = tinyTrainingModel(seed: 7)
        let k = 3
        let pixels = Tensor.concatenate([randomFloats([1, 1, 2, 3, 28, 28], seed: 1), randomFloats([1, 1, 2, 3, 28, 28], seed: 2)], axis: 0)
        let prompts = [[24, 3, 5, 7], [24, 9, 2, 4]]
        let rowMasks = prompts.flatMap { ids in Array(repeating: Tensor(indices: ids.flatMap { _ in [1, 0] }, shape: [ids.count, 1, 2]), count: k) }
        let crossMask = MllamaForConditionalGeneration.leftPaddedCrossAttentionMask(rowMasks)
        let shared = MllamaSharedImageDecoder(model: model, pixelValues: pixels, aspectRatioIds: Tensor(indices: [1, 1], shape: [2, 1]),
                                              aspectRatioMask: Tensor(indices: [1, 0, 1, 0], shape: [2, 1, 2]),
                                              crossAttentionMask: crossMask, samplesPerPrompt: k)
        let repeatedPixels = Tensor.concatenate((0..<2).flatMap { u in Array(repeating: pixels.slice(axis: 0, u..<(u + 1)), count: k) }, axis: 0)
        let separate = model.conditioned(pixelValues: repeatedPixels.contiguous(), aspectRatioIds: Tensor(indices: Array(repeating: 1, count: 6), shape: [6, 1]),
                                         aspectRatioMask: Tensor(indices: Array((0..<6).map { _ in [1, 0] }.joined()), shape: [6, 1, 2]),
                                         crossAttentionMask: crossMask)
        let (sharedCache, separateCache) = (shared.makeCache(batch: 6, capacity: 8), separate.makeCache(batch: 6, capacity: 8))
        var ids = Tensor(indices: prompts.flatMap { prompt in Array(repeating: prompt, count: k).flatMap { $0 } }, shape: [6, 4])
        for step in 0..<4 {
            let attention = Tensor(indices: Array(repeating: 1, count: 6 * (4 + step)), shape: [6, 4 + step])
            let (a, b) = (shared.decode(ids, attentionMask: attention, cache: sharedCache).floats(),
                          separate.decode(ids, attentionMask: attention, cache: separateCache).floats())
            let largest = zip(a, b).map { abs($0 - $1) }.max()!
            #expect(largest <= 1e-5, "step \(step): logits differ by up to \(largest)")
            // Different next tokens for the rows of a group, so that they really decode apart.
            ids = Tensor(indices: (0..<6).map { 3 + ($0 * 5 + step) % 20 }, shape: [6, 1])
        }
    }

    @Test("the correctness checks: normalised exact match, a multiple-choice letter, a recipe regex")
    func answerChecks() {
        #expect(candidatePasses("The red circle.", reference: "red circle", check: .exact, pattern: nil))
        #expect(!candidatePasses("blue", reference: "red", check: .exact, pattern: nil))
        #expect(candidatePasses("Answer: (B) because…", reference: "B", check: .choice, pattern: nil))
        #expect(!candidatePasses("Because A is wrong", reference: "B", check: .choice, pattern: nil))
        #expect(!candidatePasses("Blue", reference: "B", check: .choice, pattern: nil), "a word starting with B is no letter")
        #expect(candidatePasses("The answer is 3.", reference: "3", check: .regex, pattern: "answer is {answer}\\b"))
        #expect(!candidatePasses("The answer is 31.", reference: "3", check: .regex, pattern: "answer is {answer}\\b"))
    }

    @Test("sampling prompts keep a question's answer and a preference's one-text chosen reply as references")
    func samplingPromptReferences() throws {
        let directory = try TemporaryDirectory()
        try directory.writePNG("a.png")
        let prompt = Self.colourPrompt
        let preferences = try directory.write("p.jsonl", """
            {"images": ["a.png"], \(prompt), "chosen": "The circle is red.", "rejected": "The circle is blue."}
            {"images": ["a.png"], \(prompt), "chosen": [{"role": "assistant", "content": "Red."}, {"role": "user", "content": "Sure?"}, {"role": "assistant", "content": "Yes."}], "rejected": "Blue."}

            """)
        let questions = try directory.write("q.jsonl", #"{"image": "a.png", "question": "What colour? Answer briefly.", "answer": "red"}"# + "\n")
        let prompts = SamplingPrompt.prompts(in: [try Dataset(path: preferences), try Dataset(path: questions)], limit: 0)
        #expect(prompts.map(\.reference) == ["The circle is red.", nil, "red"])
        #expect(SamplingPrompt.prompts(in: [try Dataset(path: preferences), try Dataset(path: questions)], limit: 2).count == 2)
    }

    @Test("a preference record's responses learn only their own tokens; formatting tokens can be masked")
    func preferenceLabels() throws {
        let directory = try TemporaryDirectory()
        try directory.writePNG("a.png")
        let file = try directory.write("p.jsonl", #"{"images": ["a.png"], \#(Self.colourPrompt), "chosen": "Red.", "rejected": "Blue.", "edited": "Bright red."}"# + "\n")
        let record = try Dataset(path: file).record(at: 0).get()
        let plain = try PreferenceEncoder(samples: DataTestSupport.encoder()).encode(record)
        func learned(_ sample: EncodedSample) -> [Int] { sample.labels.filter { $0 != -100 } }
        #expect(learned(plain.chosen) == DataTestSupport.bytes("Red.") + [DataTestSupport.endOfTurn])
        #expect(learned(plain.rejected) == DataTestSupport.bytes("Blue.") + [DataTestSupport.endOfTurn])
        #expect(learned(plain.edited!) == DataTestSupport.bytes("Bright red.") + [DataTestSupport.endOfTurn])
        let masked = try PreferenceEncoder(samples: DataTestSupport.encoder(), masksFormattingTokens: true).encode(record)
        #expect(learned(masked.chosen) == DataTestSupport.bytes("Red."))

        // A micro-batch of it: chosen, rejected, edited rows; one decoded image shared by all three.
        let loader = try PreferenceLoader(sources: [DataSource(try Dataset(path: file))], encoder: PreferenceEncoder(samples: DataTestSupport.encoder()),
                                          options: DataLoaderOptions(microBatchSize: 1, seed: 0))
        let batch = try #require(try loader.next())
        #expect(batch.sampleIDs.map { $0.split(separator: "#").last! } == ["chosen", "rejected", "edited"])
        #expect(PreferenceLayout(batch: batch) == PreferenceLayout(pairs: 1, hasEdited: true))
        #expect(rankedPairs(PreferenceLayout(batch: batch)).count == 3, "edited > chosen > rejected gives three ranked pairs")
    }

    @Test("rejected_up_to_difference: a rejected response counts up to its first token that differs from the chosen one")
    func rejectedUpToDifference() throws {
        let directory = try TemporaryDirectory()
        try directory.writePNG("a.png")
        let prompt = Self.colourPrompt
        let file = try directory.write("p.jsonl", """
            {"images": ["a.png"], \(prompt), "chosen": "Red.", "rejected": "Rot."}
            {"images": ["a.png"], \(prompt), "chosen": "Red.", "rejected": "Blue."}
            {"images": ["a.png"], \(prompt), "chosen": "Red.", "rejected": "Red. Very red."}
            {"images": ["a.png"], \(prompt), "chosen": "Red.", "rejected": "Red."}

            """)
        func learned(_ sample: EncodedSample) -> [Int] { sample.labels.filter { $0 != -100 } }
        let dataset = try Dataset(path: file)
        let truncating = PreferenceEncoder(samples: try DataTestSupport.encoder(), truncatesRejected: true)
        let plain = PreferenceEncoder(samples: try DataTestSupport.encoder())
        let expected: [[Int]] = [DataTestSupport.bytes("Ro"), DataTestSupport.bytes("B"), DataTestSupport.bytes("Red. "),
                                 DataTestSupport.bytes("Red.") + [DataTestSupport.endOfTurn]]
        for (index, rejected) in expected.enumerated() {
            let record = try dataset.record(at: index).get()
            let truncated = try truncating.encode(record), whole = try plain.encode(record)
            #expect(learned(truncated.rejected) == rejected, "record \(index)")
            #expect(truncated.rejected.tokenIDs == whole.rejected.tokenIDs, "only labels change")
            #expect(truncated.chosen.labels == whole.chosen.labels, "the chosen response is whole")
        }
        // The recipe key: true sets it; false leaves it unset, so older recipes' digests stay.
        func recipe(_ value: Bool) throws -> Recipe {
            try Recipe.parse(yaml: "stages: [{name: d, kind: dpo, datasets: [p.jsonl], steps: 1, rejected_up_to_difference: \(value)}]",
                             file: "r.yaml", directory: directory.url)
        }
        let yes = try recipe(true), no = try recipe(false)
        #expect(yes.stages[0].post.rejectedUpToDifference == true)
        #expect(no.stages[0].postTraining?.rejectedUpToDifference == nil)
    }

    @Test("on-policy pairs: anchor_unpaired writes a prompt without a pair as its right answer paired with itself; the DPO step sees no preference in it")
    func anchoredPairs() throws {
        let directory = try TemporaryDirectory()
        let image = try directory.writePNG("a.png")
        func prompt(_ id: String) -> SamplingPrompt {
            SamplingPrompt(id: id, location: RecordLocation(file: "q.jsonl", place: id), messages: [ChatMessage(role: .user, parts: [.image, .text("Colour?")])],
                           images: [.file(URL(fileURLWithPath: image))], reference: "red")
        }
        let prompts = [prompt("paired"), prompt("all-right"), prompt("all-wrong")]
        let candidates = [
            PromptCandidates(prompt: 0, texts: ["red", "blue"], correct: [true, false], rewards: [2, -1]),
            PromptCandidates(prompt: 1, texts: ["red", "red"], correct: [true, true], rewards: [2, 2]),
            PromptCandidates(prompt: 2, texts: ["blue", "green"], correct: [false, false], rewards: [1, -1]),
        ]
        var settings = PostTrainingSettings()
        settings.pairRewardGap = 0.5
        let file = directory.url.appendingPathComponent("pairs.jsonl")
        #expect(try OnPolicyData.writePairs(candidates, prompts: prompts, settings: settings, to: file) == (1, 0))
        #expect(try OnPolicyData.writePairs(candidates, prompts: prompts, settings: settings, to: file, anchors: true) == (1, 1))
        let dataset = try Dataset(path: file.path)
        #expect(dataset.count == 2)
        let encoder = PreferenceEncoder(samples: try DataTestSupport.encoder())
        let records = try (0..<2).map { try encoder.encode(try dataset.record(at: $0).get()) }
        #expect(records.map(\.id) == ["paired-pair", "all-right-anchor"])
        #expect(records[1].chosen.tokenIDs == records[1].rejected.tokenIDs)

        // Collated as a DPO micro-batch, the anchor is the pair without a preference.
        let loader = try PreferenceLoader(sources: [DataSource(dataset)], encoder: encoder,
                                          options: DataLoaderOptions(microBatchSize: 2, seed: 0, shuffle: false), includesEdited: false)
        let batch = try #require(try loader.next())
        let flags = PreferenceLayout(batch: batch).preferencePairs(in: batch)
        let order = batch.sampleIDs.prefix(2).map { $0.hasPrefix("paired") }
        #expect(flags == order, "\(batch.sampleIDs): \(flags)")

        // The key needs on-policy DPO with an NLL term; the error names the field.
        func parse(_ yaml: String) throws -> Recipe {
            try Recipe.parse(yaml: "stages: [{name: d, kind: dpo, datasets: [p.jsonl], steps: 1, learning_rate: 0.001, reward_model: r, \(yaml)}]",
                             file: "r.yaml", directory: directory.url)
        }
        #expect(try parse("anchor_unpaired: true, on_policy: true, dpo_nll_weight: 1.0").stages[0].post.anchorUnpaired == true)
        for wrong in ["anchor_unpaired: true, on_policy: true", "anchor_unpaired: true, dpo_nll_weight: 1.0"] {
            #expect { _ = try parse(wrong) } throws: { "\($0)".contains("anchor_unpaired") }
        }
    }

    /// Two thread ranks each run one of a step's two preference micro-batches and sum their
    /// gradients; one process accumulates both. In float32 the sum of two gradients is the same
    /// single addition either way (a + b), so the weights, the EMA reference and TRL's figures are
    /// bit-identical to one process's, and the ranks agree.
    @Test("reward and DPO steps on 2 ranks give one process's weights, EMA reference and figures, bit for bit")
    func preferenceStepsOnTwoRanks() throws {
        @Sendable func batches(_ step: Int) -> [TrainingBatch] {
            (0..<2).map { half in
                let first = 8 * step + 4 * half
                var batch = tinyBatch(samples: Array(first..<(first + 4)))
                batch.sampleIDs = ["a\(first)#chosen", "b\(first)#chosen", "a\(first)#rejected", "b\(first)#rejected"]
                return batch
            }
        }
        /// The weights after 3 steps, the reference's weights and the last step's figures.
        @Sendable func train(dpo: Bool, parallelism: DataParallelism?) throws -> ([[Float]], [[Float]], [String: Double]) {
            let policy = tinyTrainingModel(seed: 1), reference = tinyTrainingModel(seed: 1)
            let model: any TrainableLanguageModel = dpo ? policy : VisionRewardModel(model: policy, seed: 3)
            try makeTrainable(model, groups: dpo ? ["crossAttentionLayers"] : ["crossAttentionLayers", VisionRewardModel.headGroup])
            let optimizer = AdamW(module: model, learningRate: 0.01)
            let stepper: any StageStepping = dpo
                ? DPOStepper(policy: policy, reference: reference, optimizer: optimizer, maxGradNorm: 1, beta: 0.1, nllWeight: 0.2,
                             emaEvery: 2, emaAlpha: 0.5)
                : RewardStepper(model: model as! VisionRewardModel, optimizer: optimizer, maxGradNorm: 1, margin: 0.1, centerCoefficient: 0.01)
            for step in 0..<3 {
                let report = try parallelism.map { try stepper.step(batches(step), learningRate: 0.01, across: $0) }
                    ?? stepper.step(batches(step), learningRate: 0.01)
                #expect(report.isFinite)
                stepper.didFinishStep(step + 1)
            }
            return (model.trainableParameters().map { $0.tensor.floats() }, reference.trainableParameters().map { $0.tensor.floats() }
                        + stepper.checkpointTensors().sorted { $0.key < $1.key }.map { $0.value.floats() },
                    stepper.lastStepMetrics)
        }
        for dpo in [false, true] {
            let alone = try train(dpo: dpo, parallelism: nil)
            let ranks = try ThreadRanks(size: 2).run { rank in try train(dpo: dpo, parallelism: DataParallelism(group: rank)) }
            let kind = dpo ? "DPO" : "reward"
            #expect(ranks[0].0 == ranks[1].0 && ranks[0].1 == ranks[1].1, "\(kind): the ranks agree bit for bit")
            #expect(ranks[0].0 == alone.0, "\(kind): the weights are one process's")
            #expect(ranks[0].1 == alone.1, "\(kind): the EMA reference is one process's")
            #expect(ranks[0].2 == alone.2 && ranks[1].2 == alone.2 && !alone.2.isEmpty, "\(kind): the figures cover the whole step")
        }
    }
}
