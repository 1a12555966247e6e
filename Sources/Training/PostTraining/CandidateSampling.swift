import Checkpoint
import Collectives
import Dispatch
import Foundation
import Media
import Models
import Processing
import TensorCore
import Tokenization

// Shapes: U prompts of a sampling batch, K samples per prompt, B = U·K rows, T tokens, N images, X tiles.

/// A prompt to sample answers for, with its reference answer when the data has one.
public struct SamplingPrompt: Sendable {
    public var id: String
    public var location: RecordLocation
    /// The conversation so far; the next message is the assistant's.
    public var messages: [ChatMessage]
    public var images: [ImageSource]
    public var reference: String?

    /// The prompts of a dataset's records: a question (its reference answer kept), a preference
    /// record's prompt (its chosen answer, when that is one text reply, as the reference), or a
    /// conversation up to its last assistant message. Other records are skipped.
    public static func prompts(in datasets: [Dataset], limit: Int) -> [SamplingPrompt] {
        var prompts: [SamplingPrompt] = []
        for dataset in datasets {
            for index in 0..<dataset.count {
                if limit > 0 && prompts.count >= limit { return prompts }
                guard case .success(let record) = dataset.record(at: index) else { continue }
                switch record.content {
                case .question(let prompt, let answer, _):
                    let user = ChatMessage(role: .user, parts: Array(repeating: .image, count: record.images.count) + [.text(prompt)])
                    prompts.append(SamplingPrompt(id: record.id, location: record.location, messages: [user], images: record.images, reference: answer))
                case .preference(let prompt, let chosen, _, _):
                    prompts.append(SamplingPrompt(id: record.id, location: record.location, messages: prompt, images: record.images,
                                                  reference: singleTextReply(chosen)))
                case .conversation(let messages):
                    guard let last = messages.lastIndex(where: { $0.role == .assistant }), last > 0 else { continue }
                    prompts.append(SamplingPrompt(id: record.id, location: record.location, messages: Array(messages[..<last]),
                                                  images: record.images, reference: nil))
                case .caption: continue
                }
            }
        }
        return prompts
    }

    /// The text of a response that is one assistant message of text only, else nil.
    private static func singleTextReply(_ messages: [ChatMessage]) -> String? {
        guard messages.count == 1, messages[0].role == .assistant else { return nil }
        var text = ""
        for part in messages[0].parts {
            guard case .text(let piece) = part else { return nil }
            text += piece
        }
        return text
    }
}

/// The candidates of one prompt: the sampled texts, whether each passed the correctness check (nil:
/// no reference answer), and each one's reward.
public struct PromptCandidates: Codable, Sendable, Equatable {
    public var prompt: Int
    public var texts: [String]
    public var correct: [Bool?]
    /// nil for an empty answer (never kept).
    public var rewards: [Double?]
}

/// One batch of sampled prompts as written to `candidates/batch-NNNNNN.json`.
struct CandidateBatchFile: Codable, Sendable {
    var prompts: [PromptCandidates]
    var generatedTokens: Int
    var seconds: Double
}

/// The rewards of a rejection stage's sampled candidates (its `candidates/batch-*.json`) and of the
/// answers it kept (its `kept.jsonl`), in file order, for reports.
public func rejectionRewards(stageFolder: URL) throws -> (all: [Double], kept: [Double]) {
    let candidates = stageFolder.appendingPathComponent("candidates")
    let batches = try FileManager.default.contentsOfDirectory(atPath: candidates.path).filter { $0.hasSuffix(".json") }.sorted()
    let all = try batches.flatMap { name in
        try JSONDecoder().decode(CandidateBatchFile.self, from: Data(contentsOf: candidates.appendingPathComponent(name)))
            .prompts.flatMap { $0.rewards.compactMap { $0 } }
    }
    struct KeptLine: Decodable { var reward: Double }
    let kept = try String(contentsOf: stageFolder.appendingPathComponent("kept.jsonl"), encoding: .utf8)
        .split(separator: "\n").map { try JSONDecoder().decode(KeptLine.self, from: Data($0.utf8)).reward }
    return (all, kept)
}

/// Whether a candidate answer is correct against a reference answer.
public func candidatePasses(_ candidate: String, reference: String, check: AnswerCheck, pattern: String?) -> Bool {
    switch check {
    case .none: return true
    case .exact: return normalizedAnswer(candidate) == normalizedAnswer(reference)
    case .choice: return choiceLetter(candidate).map { $0 == choiceLetter(reference) } ?? false
    case .regex:
        let filled = (pattern ?? "").replacingOccurrences(of: "{answer}", with: NSRegularExpression.escapedPattern(for: reference))
        guard let expression = try? NSRegularExpression(pattern: filled, options: [.caseInsensitive]) else { return false }
        return expression.firstMatch(in: candidate, range: NSRange(candidate.startIndex..., in: candidate)) != nil
    }
}

/// The first standalone capital letter A–H ("B", "(B)", "B.", "Answer: B").
func choiceLetter(_ text: String) -> Character? {
    let characters = Array(text)
    for (index, character) in characters.enumerated() where ("A"..."H").contains(character) {
        let before = index == 0 ? " " : characters[index - 1], after = index + 1 < characters.count ? characters[index + 1] : " "
        if !before.isLetter && !after.isLetter { return character }
    }
    return nil
}

/// Samples K candidates per prompt from a model and scores them with a reward model, in batches of
/// `promptsPerBatch` prompts (`promptsPerBatch × K` rows, one KV-cached `generate` call). Each
/// prompt's images are encoded once and shared by its K rows (``MllamaSharedImageDecoder``).
///
/// Batch `i`'s sampling seed is derived from the stage seed and `i`, and each finished batch is
/// written to `folder/batch-NNNNNN.json` atomically, so a killed run keeps its candidates and a
/// rerun samples only the batches that are missing, with the same results.
struct CandidateSampler {
    let policy: MllamaForConditionalGeneration
    let rewardModel: VisionRewardModel
    let processor: MllamaProcessor
    let encoder: SampleEncoder
    let settings: PostTrainingSettings
    let seed: UInt64
    let folder: URL

    /// Figures of a sampling pass.
    struct Figures {
        var candidates = 0, generatedTokens = 0
        /// Seconds spent sampling and scoring (as recorded with each batch, also for batches of an earlier run).
        var seconds = 0.0, candidatesTimed = 0
        var candidatesPerSecond: Double { candidatesTimed == 0 ? .nan : Double(candidatesTimed) / max(seconds, 1e-9) }
    }

    /// What the candidates depend on besides the seed: the settings and the policy and reward
    /// model files. Batches sampled under another identity (an earlier stage ran again) are dropped.
    let identity: String

    /// The candidates of every prompt, in prompt order: batches saved by an earlier run are read,
    /// the missing ones sampled. With `group`, the ranks take the missing batches in turns (rank
    /// `r` the `r`-th of each round of N), exchange each round's batches, and rank 0 writes them;
    /// since a batch's seed depends only on its index, the result is one process's.
    ///
    /// - Throws: ``DataParallelMismatch`` (on every rank) when the ranks see different saved
    ///   batches (the run folder must be shared by every rank); ``CollectiveError`` when they cannot exchange.
    func sample(_ prompts: [SamplingPrompt], group: (any ProcessGroup)? = nil,
                onBatch: (Int, Int) -> Void = { _, _ in }) throws -> ([PromptCandidates], Figures) {
        let writer = (group?.rank ?? 0) == 0
        let identityFile = folder.appendingPathComponent("identity.txt")
        if writer && FileManager.default.contents(atPath: identityFile.path).map({ String(decoding: $0, as: UTF8.self) }) != identity {
            try? FileManager.default.removeItem(at: folder)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try AtomicFile.write(Data(identity.utf8), to: identityFile)
        }
        try group?.barrier()
        let batches = stride(from: 0, to: prompts.count, by: settings.promptsPerBatch).map { $0..<min($0 + settings.promptsPerBatch, prompts.count) }
        var sampled: [Int: CandidateBatchFile] = [:]
        for (index, range) in batches.enumerated() {
            // A prompt list of another length shifts batch boundaries: the saved prompt indices must match.
            if let data = FileManager.default.contents(atPath: batchFile(index).path), let saved = try? JSONDecoder().decode(CandidateBatchFile.self, from: data),
               saved.prompts.map(\.prompt) == Array(range) {
                sampled[index] = saved
            }
        }
        let missing = batches.indices.filter { sampled[$0] == nil }
        if let group, Set(try group.allGather(missing.map(String.init).joined(separator: ","))).count > 1 {
            throw DataParallelMismatch("the ranks see different sampled batches in \(folder.path): every rank must read the same run folder (a shared file system)")
        }
        let ranks = group?.size ?? 1, rank = group?.rank ?? 0
        for roundStart in stride(from: 0, to: missing.count, by: ranks) {
            var mine: [Int: CandidateBatchFile] = [:]
            if roundStart + rank < missing.count {
                let index = missing[roundStart + rank], range = batches[index]
                let started = DispatchTime.now().uptimeNanoseconds
                var batch = try sampleBatch(Array(prompts[range]), firstIndex: range.lowerBound, seed: DataOrder.derive(seed, 0x7361_6d70, UInt64(index)))
                batch.seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                mine[index] = batch
            }
            let round = try group.map { group in
                Dictionary(uniqueKeysWithValues: zip(missing[roundStart..<min(roundStart + ranks, missing.count)], try group.gatherInIndexOrder(mine)))
            } ?? mine
            for (index, batch) in round.sorted(by: { $0.key < $1.key }) {
                if writer {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    try AtomicFile.write(try encoder.encode(batch), to: batchFile(index))
                }
                sampled[index] = batch
            }
            onBatch(batches.count - missing.count + min(roundStart + ranks, missing.count), batches.count)
        }
        var all: [PromptCandidates] = []
        var figures = Figures()
        for index in batches.indices {
            let batch = sampled[index]!
            all += batch.prompts
            let count = batch.prompts.reduce(0) { $0 + $1.texts.count }
            figures.candidates += count
            figures.generatedTokens += batch.generatedTokens
            figures.seconds += batch.seconds
            figures.candidatesTimed += count
        }
        return (all, figures)
    }

    func batchFile(_ index: Int) -> URL { folder.appendingPathComponent(String(format: "batch-%06d.json", index)) }

    /// Samples K candidates for each prompt of one batch and scores them.
    func sampleBatch(_ prompts: [SamplingPrompt], firstIndex: Int, seed: UInt64) throws -> CandidateBatchFile {
        let k = settings.samplesPerPrompt
        let chat = encoder.chatFormat
        let stops: Set<Int> = Set(["<|eot_id|>", "<|end_of_text|>"].compactMap { processor.tokenizer.specialTokenID($0) })
        var promptIDs: [[Int]] = []
        var images: [[Image]] = []
        for prompt in prompts {
            promptIDs.append(try chat.encode(prompt.messages, addGenerationPrompt: true).ids)
            images.append(try prompt.images.map { try ImageLoading.load($0, for: prompt.location) })
        }
        let sampling = SamplingOptions(temperature: settings.temperature, topK: settings.topK, topP: settings.topP, seed: seed)
        // A batch mixing prompts with and without images samples the two groups separately.
        let withImages = prompts.indices.filter { !images[$0].isEmpty }
        if !withImages.isEmpty && withImages.count < prompts.count {
            let without = prompts.indices.filter { images[$0].isEmpty }
            let first = try sampleBatch(withImages.map { prompts[$0] }, firstIndex: 0, seed: DataOrder.derive(seed, 1))
            let second = try sampleBatch(without.map { prompts[$0] }, firstIndex: 0, seed: DataOrder.derive(seed, 2))
            var merged = [PromptCandidates?](repeating: nil, count: prompts.count)
            for (group, indices) in [(first, withImages), (second, without)] {
                for (entry, index) in zip(group.prompts, indices) { var entry = entry; entry.prompt = firstIndex + index; merged[index] = entry }
            }
            return CandidateBatchFile(prompts: merged.map { $0! }, generatedTokens: first.generatedTokens + second.generatedTokens, seconds: 0)
        }
        let rows = promptIDs.flatMap { ids in Array(repeating: ids, count: k) }
        let outputs: [[Int]]
        if !withImages.isEmpty {
            let processed = try processor.imageProcessor.preprocess(images)
            let n = images.map(\.count).max()!, g = processor.imageProcessor.config.maxImageTiles
            let masks = zip(promptIDs, processed.numTiles).flatMap { ids, tiles -> [Tensor] in
                var dense = [Int](repeating: 0, count: ids.count * n * g)
                for (image, range) in MllamaProcessor.crossAttentionRanges(tokenIDs: ids, imageTokenID: processor.imageTokenID).enumerated() {
                    for token in range { for tile in 0..<tiles[image] { dense[(token * n + image) * g + tile] = 1 } }
                }
                return Array(repeating: Tensor(indices: dense, shape: [ids.count, n, g]), count: k)     // (T, N, X) × K
            }
            let decoder = MllamaSharedImageDecoder(model: policy, pixelValues: processed.pixelValues, aspectRatioIds: processed.aspectRatioIDs,
                                                   aspectRatioMask: processed.aspectRatioMask,
                                                   crossAttentionMask: MllamaForConditionalGeneration.leftPaddedCrossAttentionMask(masks),
                                                   samplesPerPrompt: k)
            outputs = generate(with: decoder, prompts: rows, maxNewTokens: settings.maxNewTokens, sampling: sampling,
                               stopTokens: stops, padToken: processor.padTokenID)
        } else {
            outputs = generate(with: policy, prompts: rows, maxNewTokens: settings.maxNewTokens, sampling: sampling,
                               stopTokens: stops, padToken: processor.padTokenID)
        }
        let texts = outputs.map { processor.tokenizer.decode($0.filter { !stops.contains($0) }, skipSpecialTokens: true) }
        var result: [PromptCandidates] = []
        for (offset, prompt) in prompts.enumerated() {
            let candidates = Array(texts[(offset * k)..<((offset + 1) * k)])
            let rewards = try score(prompt, candidates: candidates)
            let correct = candidates.map { text in
                prompt.reference.map { candidatePasses(text, reference: $0, check: settings.answerCheck, pattern: settings.answerPattern) }
            }
            result.append(PromptCandidates(prompt: firstIndex + offset, texts: candidates, correct: correct, rewards: rewards))
        }
        return CandidateBatchFile(prompts: result, generatedTokens: outputs.reduce(0) { $0 + $1.count }, seconds: 0)
    }

    /// The reward model's score of each candidate answer to `prompt` (nil for an empty answer).
    func score(_ prompt: SamplingPrompt, candidates: [String]) throws -> [Double?] {
        var samples: [PreparedSample] = []
        var shared: MllamaImageBatch?? = nil
        var rows: [Int] = []
        for (index, text) in candidates.enumerated() where !text.allSatisfy(\.isWhitespace) {
            let (ids, labels) = try encoder.conversationIDs(prompt.messages + [ChatMessage(role: .assistant, text: text)], location: prompt.location)
            let sample = EncodedSample(id: "\(prompt.id)#\(index)", location: prompt.location, tokenIDs: ids, labels: labels, images: prompt.images)
            if shared == nil { shared = .some(try BatchCollation.prepare(sample, processor: processor, blankImages: false).images) }
            samples.append(PreparedSample(sample: sample, images: shared!))
            rows.append(index)
        }
        var rewards = [Double?](repeating: nil, count: candidates.count)
        guard !samples.isEmpty else { return rewards }
        // Every candidate shows the prompt's images: encoded once for all of them.
        let batch = BatchCollation.collate(samples, processor: processor).sharingImages(acrossGroups: samples.count)
        let scores = withNoGrad { rewardModel.rewards(batch.inputs).doubles() }
        for (row, score) in zip(rows, scores) { rewards[row] = score }
        return rewards
    }
}
