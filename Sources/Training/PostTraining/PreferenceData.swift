import Dispatch
import Foundation
import Processing
import Tokenization

// Shapes: P records (pairs) per micro-batch, G responses per record (2, or 3 with `edited`).

/// The responses of one preference record, encoded: each is the prompt followed by that response,
/// with only the response's tokens learned (TRL's completion mask).
public struct EncodedPreference: Sendable {
    public var id: String
    public var location: RecordLocation
    public var chosen: EncodedSample
    public var rejected: EncodedSample
    /// Llama 3's third response, an improved edit of the chosen one (ranked above it); nil when absent.
    public var edited: EncodedSample?
}

/// Encodes preference records (TRL's format) for the reward model and DPO.
///
/// Each response is encoded as the conversation prompt + response with ``Llama3ChatFormat``; the
/// learned positions are the response's content and its `<|eot_id|>` (after the prompt and its
/// open assistant header). With `masksFormattingTokens` (Llama 3's choice for DPO), special
/// tokens such as `<|eot_id|>` are not learned either: only the words of the response. With
/// `truncatesRejected`, the rejected response counts only up to its first token that differs from
/// the chosen one (see ``rejectedUpToDifference(chosen:rejected:)``).
public struct PreferenceEncoder: Sendable {
    public let samples: SampleEncoder
    public var masksFormattingTokens: Bool
    public var truncatesRejected: Bool
    let formattingTokens: Set<Int>

    public init(samples: SampleEncoder, masksFormattingTokens: Bool = false, truncatesRejected: Bool = false) {
        self.samples = samples
        self.masksFormattingTokens = masksFormattingTokens
        self.truncatesRejected = truncatesRejected
        let tokenizer = samples.processor.tokenizer
        formattingTokens = Set(["<|eot_id|>", "<|eom_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>",
                                "<|begin_of_text|>"].compactMap { tokenizer.specialTokenID($0) })
    }

    /// - Throws: ``DataIssue`` for a record to skip; ``DataError`` for a record that is not a preference.
    public func encode(_ record: DatasetRecord) throws -> EncodedPreference {
        var record = record
        if samples.ignoresImages { record = record.withoutImages }
        guard case .preference(let prompt, let chosen, let rejected, let edited) = record.content else {
            throw DataError("\(record.location): the reward and DPO stages read preference records (prompt, chosen, rejected)")
        }
        guard record.images.count <= samples.maxImages else {
            throw DataIssue(.tooManyImages, at: record.location, "\(record.images.count) images, more than the \(samples.maxImages) allowed per sample")
        }
        let chosenSample = try response(prompt, chosen, record: record, name: "chosen")
        var rejectedSample = try response(prompt, rejected, record: record, name: "rejected")
        if truncatesRejected { rejectedSample = Self.rejectedUpToDifference(chosen: chosenSample, rejected: rejectedSample) }
        return EncodedPreference(id: record.id, location: record.location, chosen: chosenSample, rejected: rejectedSample,
                                 edited: try edited.map { try response(prompt, $0, record: record, name: "edited") })
    }

    /// The rejected response with its tokens after the first one that differs from the chosen
    /// response's token at the same place no longer learned.
    ///
    /// Both responses follow the same prompt, so their tokens before that place are the same and
    /// cancel in DPO's margin; the first differing token is where the rejected answer goes wrong.
    /// The tokens after it continue an answer that is already wrong, and lowering them lowers the
    /// same tokens where they complete right answers: with "red" split as `re` + `d`, pairs that
    /// reject "red" (or "There" + `d`) taught a policy that was right on every red object to answer
    /// "re". Identical responses are returned unchanged.
    public static func rejectedUpToDifference(chosen: EncodedSample, rejected: EncodedSample) -> EncodedSample {
        guard let firstLearned = rejected.labels.firstIndex(where: { $0 != SampleEncoder.ignoreIndex }) else { return rejected }
        var place = firstLearned
        while place < rejected.tokenIDs.count, place < chosen.tokenIDs.count, rejected.tokenIDs[place] == chosen.tokenIDs[place] { place += 1 }
        guard place < rejected.tokenIDs.count else { return rejected }
        var truncated = rejected
        for index in (place + 1)..<truncated.labels.count { truncated.labels[index] = SampleEncoder.ignoreIndex }
        return truncated
    }

    /// The prompt's ids with the assistant header open: what generation continues from.
    public func promptIDs(_ prompt: [ChatMessage], location: RecordLocation) throws -> [Int] {
        do { return try samples.chatFormat.encode(prompt, addGenerationPrompt: true).ids } catch {
            throw DataIssue(.malformedRecord, at: location, "\(error)")
        }
    }

    func response(_ prompt: [ChatMessage], _ completion: [ChatMessage], record: DatasetRecord, name: String) throws -> EncodedSample {
        let promptLength = try promptIDs(prompt, location: record.location).count
        var (ids, labels) = try samples.conversationIDs(prompt + completion, location: record.location)
        for index in labels.indices where index < promptLength || (masksFormattingTokens && formattingTokens.contains(ids[index])) {
            labels[index] = SampleEncoder.ignoreIndex
        }
        guard labels.contains(where: { $0 != SampleEncoder.ignoreIndex }) else {
            throw DataIssue(.emptyText, at: record.location, "the \(name) response has no tokens to learn")
        }
        let imageTokens = ids.lazy.filter { $0 == samples.processor.imageTokenID }.count
        guard imageTokens == record.images.count else {
            throw DataIssue(.malformedRecord, at: record.location, "\(imageTokens) image places in the text but \(record.images.count) images")
        }
        guard ids.count <= samples.maxLength else {
            throw DataIssue(.overLength, at: record.location, "\(ids.count) tokens, more than the maximum length \(samples.maxLength)")
        }
        return EncodedSample(id: "\(record.id)#\(name)", location: record.location, tokenIDs: ids, labels: labels, images: record.images)
    }
}

/// How a preference micro-batch lays out its rows: all chosen responses, then all rejected, then
/// (when every record of the batch has one) all edited ones. Sample ids end in `#chosen`,
/// `#rejected`, `#edited`.
public struct PreferenceLayout: Sendable, Equatable {
    public var pairs: Int
    public var hasEdited: Bool

    public init(pairs: Int, hasEdited: Bool) {
        self.pairs = pairs
        self.hasEdited = hasEdited
    }

    /// Reads the layout from a batch's sample ids.
    public init(batch: TrainingBatch) {
        let edited = batch.sampleIDs.filter { $0.hasSuffix("#edited") }.count
        hasEdited = edited > 0
        pairs = hasEdited ? batch.sampleIDs.count / 3 : batch.sampleIDs.count / 2
    }

    public var chosenRows: Range<Int> { 0..<pairs }
    public var rejectedRows: Range<Int> { pairs..<(2 * pairs) }
    public var editedRows: Range<Int>? { hasEdited ? (2 * pairs)..<(3 * pairs) : nil }

    /// Whether each pair's chosen and rejected rows differ (tokens or learned positions). A pair
    /// of an answer with itself (an on-policy anchor) carries no preference.
    public func preferencePairs(in batch: TrainingBatch) -> [Bool] {
        let t = batch.labels.shape[1], ids = batch.inputs.inputIDs.integers(), labels = batch.labels.integers()
        return (0..<pairs).map { pair in
            let chosen = (pair * t)..<((pair + 1) * t), rejected = ((pairs + pair) * t)..<((pairs + pair + 1) * t)
            return ids[chosen] != ids[rejected] || labels[chosen] != labels[rejected]
        }
    }
}

/// Preference micro-batches in the seed's order (the same ``DataOrder`` as ``DataLoader``), with a
/// saved position for exact resume. Images are decoded once per record and shared by its responses.
public final class PreferenceLoader {
    public let encoder: PreferenceEncoder
    public let options: DataLoaderOptions
    public private(set) var position: DataPosition
    let datasets: [Dataset]
    private var order: DataOrder
    private let onSkip: (@Sendable (DataIssue) -> Void)?
    private var reported: Set<RecordLocation> = []
    public private(set) var dataWaitSeconds = 0.0
    /// Whether edited responses become rows (the reward model ranks them; DPO uses chosen and rejected only).
    public let includesEdited: Bool

    public init(sources: [DataSource], encoder: PreferenceEncoder, options: DataLoaderOptions, includesEdited: Bool = true,
                resumingFrom saved: DataPosition? = nil, onSkip: (@Sendable (DataIssue) -> Void)? = nil) throws {
        guard !sources.isEmpty else { throw DataError("no preference datasets to load") }
        datasets = sources.map(\.dataset)
        let start = DataPosition(datasets: datasets)
        if let saved, saved.datasets != start.datasets {
            throw DataError("the saved data position is for other datasets (\(saved.datasets.joined(separator: ", "))) than these (\(start.datasets.joined(separator: ", ")))")
        }
        self.encoder = encoder
        self.options = options
        self.includesEdited = includesEdited
        self.onSkip = onSkip
        position = saved ?? start
        order = DataOrder(seed: options.seed, counts: datasets.map(\.count), weights: sources.map(\.weight), shuffle: options.shuffle)
    }

    public var samplesSeen: Int { position.draws }
    private var drawLimit: Int? { options.epochs.map { $0 * datasets.reduce(0) { $0 + $1.count } } }

    private enum Outcome { case ready(EncodedPreference, [PreparedSample]), skip(DataIssue), fatal(Error) }

    /// The next micro-batch of `microBatchSize` records, or nil when the configured epochs are done.
    public func next() throws -> TrainingBatch? {
        let started = DispatchTime.now().uptimeNanoseconds
        defer { dataWaitSeconds += Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 }
        var ready: [(EncodedPreference, [PreparedSample])] = []
        var skipsInARow = 0
        while ready.count < options.microBatchSize {
            var plans: [(Int, Int)] = []
            var positions: [DataPosition] = []
            while plans.count < options.microBatchSize - ready.count {
                if let limit = drawLimit, position.draws + plans.count >= limit { break }
                var planned = positions.last ?? position
                plans.append(order.next(&planned))
                positions.append(planned)
            }
            guard !plans.isEmpty else { break }
            var outcomes = [Outcome?](repeating: nil, count: plans.count)
            let datasets = self.datasets, encoder = self.encoder, blank = options.blankImages
            outcomes.withUnsafeMutableBufferPointer { results in
                let results = results
                DispatchQueue.concurrentPerform(iterations: plans.count) { index in
                    results[index] = Self.prepare(datasets[plans[index].0].record(at: plans[index].1), encoder: encoder, blankImages: blank)
                }
            }
            for (outcome, after) in zip(outcomes, positions) {
                let counts = position.skipCounts
                position = after
                position.skipCounts = counts
                switch outcome! {
                case .ready(let preference, let prepared):
                    ready.append((preference, prepared))
                    skipsInARow = 0
                case .fatal(let error): throw error
                case .skip(let issue):
                    position.skipCounts.add(issue.cause)
                    if reported.insert(issue.location).inserted { onSkip?(issue) }
                    let seen = position.draws, skipped = position.skipCounts.total
                    if seen >= options.minimumSamplesForSkipCheck && Double(skipped) > options.maxSkipShare * Double(seen) {
                        throw DataError("too much bad data: \(skipped) of \(seen) preference records seen were skipped (\(position.skipCounts)), more than the \(options.maxSkipShare * 100)% allowed; the last: \(issue)")
                    }
                    skipsInARow += 1
                    if skipsInARow > 2 * datasets.reduce(0, { $0 + $1.count }) + 100 {
                        throw DataError("no usable preference records: the last \(skipsInARow) drawn were all skipped; the last: \(issue)")
                    }
                }
            }
        }
        guard !ready.isEmpty else { return nil }
        let withEdited = includesEdited && ready.allSatisfy { $0.0.edited != nil }
        let groups = withEdited ? 3 : 2
        let rows = (0..<groups).flatMap { group in ready.map { $0.1[group] } }
        return BatchCollation.collate(rows, processor: encoder.samples.processor).sharingImages(acrossGroups: groups)
    }

    private static func prepare(_ entry: Result<DatasetRecord, DataIssue>, encoder: PreferenceEncoder, blankImages: Bool) -> Outcome {
        do {
            let preference = try encoder.encode(try entry.get())
            let first = try BatchCollation.prepare(preference.chosen, processor: encoder.samples.processor, blankImages: blankImages)
            let rows = [preference.chosen, preference.rejected] + (preference.edited.map { [$0] } ?? [])
            return .ready(preference, rows.map { PreparedSample(sample: $0, images: first.images) })
        } catch let issue as DataIssue {
            return .skip(issue)
        } catch {
            return .fatal(error)
        }
    }
}

/// A ``PreferenceLoader`` as the trainer's endless stream of micro-batches.
final class PreferenceStream: TrainingDataStream {
    let loader: PreferenceLoader
    init(_ loader: PreferenceLoader) { self.loader = loader }

    func nextBatch() throws -> TrainingBatch {
        guard let batch = try loader.next() else { throw TrainingError("the preference data ran out (no epoch limit was expected)") }
        return batch
    }

    func savePosition() throws -> Data { try JSONEncoder().encode(loader.position) }
    var samplesSeen: Int { loader.samplesSeen }
    var dataWaitSeconds: Double { loader.dataWaitSeconds }
    var skipCounts: [String: Int] {
        Dictionary(uniqueKeysWithValues: SkipCause.allCases.compactMap { cause in
            loader.position.skipCounts[cause] > 0 ? (cause.rawValue, loader.position.skipCounts[cause]) : nil })
    }
}
