import Foundation
import Models
import Processing
import TensorCore

/// The reward model's scores of one record.
public struct RewardScore: Sendable, Equatable {
    public var id: String
    /// For a preference record: `chosen`, `rejected` (and `edited`); otherwise `response` (the last
    /// assistant message, or a question's answer).
    public var rewards: [String: Double]
}

/// A reward model (a `reward` stage's output) with the encoders that turn records into its inputs.
public struct RewardScorer {
    let model: VisionRewardModel
    let processor: MllamaProcessor
    let samples: SampleEncoder
    let preferences: PreferenceEncoder

    /// Loads the reward model in `directory`; records longer than `maxLength` tokens are refused.
    public init(directory: URL, maxLength: Int = 4096) throws {
        model = try VisionRewardModel.load(directory: directory)
        processor = try loadProcessor(directory: directory, imageTokenID: model.model.config.imageTokenIndex)
        samples = try SampleEncoder(processor: processor, maxLength: maxLength, maxImages: 16)
        preferences = PreferenceEncoder(samples: samples)
    }

    /// The rewards of a record's responses: `chosen`, `rejected` (and `edited`) for a preference
    /// record, `response` for a conversation (its last assistant turn) or a question (its answer).
    /// Throws a ``DataIssue`` naming the record when it cannot be read.
    public func rewards(of record: DatasetRecord, blankImages: Bool = false) throws -> [String: Double] {
        let rows: [(String, EncodedSample)]
        if case .preference = record.content {
            let encoded = try preferences.encode(record)
            rows = [("chosen", encoded.chosen), ("rejected", encoded.rejected)] + (encoded.edited.map { [("edited", $0)] } ?? [])
        } else {
            rows = [("response", try samples.encode(record))]
        }
        // Every response of a record shows the same images: decoded, processed and encoded once.
        let first = try BatchCollation.prepare(rows[0].1, processor: processor, blankImages: blankImages)
        let batch = BatchCollation.collate(rows.map { PreparedSample(sample: $0.1, images: first.images) }, processor: processor)
            .sharingImages(acrossGroups: rows.count)
        let rewards = withNoGrad { model.rewards(batch.inputs).doubles() }
        return Dictionary(uniqueKeysWithValues: zip(rows.map(\.0), rewards))
    }
}

/// Scores the (image, prompt, response) triples of a dataset file with the reward model in
/// `directory` (a `reward` stage's output): each response of a preference record, or the last
/// assistant turn of a conversation or question record. Records that cannot be read are skipped
/// and reported through `onSkip`.
public func scoreResponses(directory: URL, data: URL, blankImages: Bool = false, maxLength: Int = 4096,
                           onSkip: (String) -> Void = { _ in }) throws -> [RewardScore] {
    let scorer = try RewardScorer(directory: directory, maxLength: maxLength)
    let dataset = try Dataset(path: data.path)
    var scores: [RewardScore] = []
    for index in 0..<dataset.count {
        do {
            let record = try dataset.record(at: index).get()
            scores.append(RewardScore(id: record.id, rewards: try scorer.rewards(of: record, blankImages: blankImages)))
        } catch let issue as DataIssue {
            onSkip("\(issue)")
        }
    }
    return scores
}
