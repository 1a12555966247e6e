import Foundation
import Models
import TensorCore

/// The reward model's scores of one record.
public struct RewardScore: Sendable, Equatable {
    public var id: String
    /// For a preference record: `chosen`, `rejected` (and `edited`); otherwise `response` (the last
    /// assistant message, or a question's answer).
    public var rewards: [String: Double]
}

/// Scores the (image, prompt, response) triples of a dataset file with the reward model in
/// `directory` (a `reward` stage's output): each response of a preference record, or the last
/// assistant turn of a conversation or question record. Records that cannot be read are skipped
/// and reported through `onSkip`.
public func scoreResponses(directory: URL, data: URL, blankImages: Bool = false, maxLength: Int = 4096,
                           onSkip: (String) -> Void = { _ in }) throws -> [RewardScore] {
    let model = try VisionRewardModel.load(directory: directory)
    let processor = try loadProcessor(directory: directory, imageTokenID: model.model.config.imageTokenIndex)
    let samples = try SampleEncoder(processor: processor, maxLength: maxLength, maxImages: 16)
    let preferences = PreferenceEncoder(samples: samples)
    let dataset = try Dataset(path: data.path)
    var scores: [RewardScore] = []
    for index in 0..<dataset.count {
        do {
            let record = try dataset.record(at: index).get()
            var rows: [(String, EncodedSample)]
            if case .preference = record.content {
                let encoded = try preferences.encode(record)
                rows = [("chosen", encoded.chosen), ("rejected", encoded.rejected)] + (encoded.edited.map { [("edited", $0)] } ?? [])
            } else {
                rows = [("response", try samples.encode(record))]
            }
            let first = try BatchCollation.prepare(rows[0].1, processor: processor, blankImages: blankImages)
            let batch = BatchCollation.collate(rows.map { PreparedSample(sample: $0.1, images: first.images) }, processor: processor)
            let rewards = withNoGrad { model.rewards(batch.inputs).doubles() }
            scores.append(RewardScore(id: record.id, rewards: Dictionary(uniqueKeysWithValues: zip(rows.map(\.0), rewards))))
        } catch let issue as DataIssue {
            onSkip("\(issue)")
        }
    }
    return scores
}
