import Foundation

/// A policy's greedy answer to a held-out question, checked against the reference and scored by a
/// reward model.
public struct ScoredAnswer: Sendable, Equatable {
    public var id: String
    /// The question's type (`color`, `position`…; `question` when the record names none).
    public var type: String
    public var answer: String
    /// Whether the answer matches the reference (``normalizedAnswer(_:)``).
    public var correct: Bool
    public var reward: Double
}

/// The held-out reward of a policy: its greedy answers to the question records of `dataset` (at
/// most `maxSamples`, 0: all), each scored by the reward model in `rewardModel` with the question's
/// image — what rejection sampling and DPO are meant to raise, measured on what the policy actually
/// says rather than on fixed preference pairs.
public func scoreHeldOutAnswers(policy: URL, rewardModel: URL, dataset: URL, maxSamples: Int = 0, maxNewTokens: Int = 16,
                                maxLength: Int = 2048) throws -> [ScoredAnswer] {
    let (model, encoder) = try openForEvaluation(directory: policy, maxLength: maxLength)
    let found = questionRecords(in: [try Dataset(path: dataset.path)], maxSamples: maxSamples)
    let answering = try QuestionAnswering(model: model, processor: encoder.processor, maxNewTokens: maxNewTokens)
    let answers = try answering.answers(to: found.map(\.question))
    let scorer = try RewardScorer(directory: rewardModel, maxLength: maxLength)
    return try zip(found, answers).map { entry, answer in
        var answered = entry.record
        if case .question(let prompt, _, let kind) = entry.record.content { answered.content = .question(prompt: prompt, answer: answer, kind: kind) }
        guard let reward = try scorer.rewards(of: answered)["response"] else {
            throw TrainingError("\(entry.record.location): the reward model gave no score for the answer")
        }
        return ScoredAnswer(id: entry.record.id, type: entry.question.type, answer: answer,
                            correct: normalizedAnswer(answer) == normalizedAnswer(entry.question.answer), reward: reward)
    }
}

extension Array where Element == ScoredAnswer {
    /// The mean reward (NaN when empty).
    public var meanReward: Double { isEmpty ? .nan : map(\.reward).reduce(0, +) / Double(count) }
}
