import Foundation

/// How one policy's held-out answers changed from the policy it was trained from, question by
/// question: exact match gained and lost on the same questions, with an exact McNemar test, and
/// the mean change of the reward model's score with its standard error. On a few hundred
/// questions a change of a point or two is noise; this says which changes are not.
public struct PairedChange: Sendable, Equatable {
    public var before: String
    public var after: String
    /// Questions both policies answered.
    public var questions: Int
    /// Wrong before, right after.
    public var gained: Int
    /// Right before, wrong after.
    public var lost: Int
    /// Mean of (reward after − reward before) over the questions.
    public var rewardChange: Double
    /// The standard error of ``rewardChange`` (the paired differences' standard deviation / √n).
    public var rewardChangeStandardError: Double

    /// The answers of `before` and `after` matched by question id (questions only one answered are left out).
    public init(before: String, _ beforeAnswers: [ScoredAnswer], after: String, _ afterAnswers: [ScoredAnswer]) {
        self.before = before
        self.after = after
        let earlier = Dictionary(beforeAnswers.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let pairs = afterAnswers.compactMap { answer in earlier[answer.id].map { ($0, answer) } }
        questions = pairs.count
        gained = pairs.filter { !$0.0.correct && $0.1.correct }.count
        lost = pairs.filter { $0.0.correct && !$0.1.correct }.count
        let differences = pairs.map { $0.1.reward - $0.0.reward }
        let n = Double(differences.count)
        let mean = differences.isEmpty ? Double.nan : differences.reduce(0, +) / n
        let variance = differences.count < 2 ? Double.nan : differences.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
        rewardChange = mean
        rewardChangeStandardError = (variance / n).squareRoot()
    }

    /// The change of exact match, as a share of the questions.
    public var exactMatchChange: Double { questions == 0 ? .nan : Double(gained - lost) / Double(questions) }

    /// The two-sided exact McNemar p-value: the chance, were both policies equally good, of a split
    /// of the `gained + lost` changed answers at least this uneven (a binomial with p = ½).
    public var exactMatchPValue: Double { Self.mcNemarPValue(gained: gained, lost: lost) }

    /// Whether the exact-match change is beyond what chance gives at the 5 % level.
    public var exactMatchChangeIsSignificant: Bool { exactMatchPValue < 0.05 }

    /// Whether the reward change is more than two standard errors from zero.
    public var rewardChangeIsSignificant: Bool { abs(rewardChange) > 2 * rewardChangeStandardError }

    static func mcNemarPValue(gained: Int, lost: Int) -> Double {
        let n = gained + lost
        guard n > 0 else { return 1 }
        // 2 · P(X ≤ min) for X ~ Binomial(n, ½), summed in log space so that n in the thousands does not underflow.
        let logHalf = Double(n) * log(0.5)
        func logChoose(_ k: Int) -> Double { lgamma(Double(n + 1)) - lgamma(Double(k + 1)) - lgamma(Double(n - k + 1)) }
        let tail = (0...min(gained, lost)).reduce(0.0) { $0 + exp(logChoose($1) + logHalf) }
        return min(1, 2 * tail)
    }

    /// One line for the report: "rejection against sft: exact match +0.2 points (20 gained, 19 lost
    /// of 400; p = 1.00, within noise); reward +0.018 ± 0.018 (within noise)".
    public var sentence: String {
        let exactMatch = String(format: "exact match %+.1f points (%d gained, %d lost of %d; p = %.2f, %@)",
                                100 * exactMatchChange, gained, lost, questions, exactMatchPValue,
                                exactMatchChangeIsSignificant ? "beyond noise" : "within noise")
        let reward = String(format: "reward %+.3f ± %.3f (%@)", rewardChange, rewardChangeStandardError,
                            rewardChangeIsSignificant ? "beyond noise" : "within noise")
        return "\(after) against \(before): \(exactMatch); \(reward)"
    }

    /// For `metrics.json`; a figure that is not a number (no questions, or one) is left out, as JSON has no NaN.
    var json: [String: Any] {
        let figures = ["exact_match_change": exactMatchChange, "exact_match_p_value": exactMatchPValue,
                       "reward_change": rewardChange, "reward_change_standard_error": rewardChangeStandardError]
        var object: [String: Any] = ["before": before, "after": after, "questions": questions, "gained": gained, "lost": lost]
        for (key, value) in figures where value.isFinite { object[key] = value }
        return object
    }
}
