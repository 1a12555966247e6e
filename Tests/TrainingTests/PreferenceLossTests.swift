import Foundation
import Testing
import TensorCore
@testable import Training
import _TestSupport

/// The fixture: TRL 1.16's `RewardTrainer.compute_loss`, `DPOTrainer._compute_loss` and
/// `SyncRefModelCallback._sync_target_model` on seeded random inputs
/// (Scripts/fixtures/make_preference_loss_fixtures.py).
private struct TRLFixture: Decodable {
    struct Reward: Decodable {
        var chosen: [Double], rejected: [Double], margin: [Double]?, center_coefficient: Double?
        var loss: Double, grad_chosen: [Double], grad_rejected: [Double], metrics: [String: Double]
    }
    struct DPO: Decodable {
        var beta: Double, nll_weight: Double, pairs: Int
        var per_token_logps: [[Double]], reference_per_token_logps: [[Double]], completion_mask: [[Int]]
        var loss: Double, grad_per_token_logps: [[Double]], metrics: [String: Double]
    }
    struct EMA: Decodable {
        var alpha: Double
        var policy: [String: [Double]], reference_before: [String: [Double]], reference_after: [String: [Double]]
    }
    var reward: [Reward], dpo: [DPO], ema: EMA

    static func load() throws -> TRLFixture {
        try JSONDecoder().decode(TRLFixture.self, from: Data(contentsOf: Fixtures.url("post-training/trl-losses.json")))
    }
}

@Suite("Preference losses against TRL")
struct PreferenceLossTests {
    @Test("the reward-model loss, its gradients and its figures equal TRL's (margins and centring included)")
    func rewardLossMatchesTRL() throws {
        for (index, case_) in try TRLFixture.load().reward.enumerated() {
            let p = case_.chosen.count
            let chosen = Tensor(case_.chosen, shape: [p], requiresGrad: true)
            let rejected = Tensor(case_.rejected, shape: [p], requiresGrad: true)
            let loss = rewardPairLoss(chosen: chosen, rejected: rejected, margins: case_.margin,
                                      centerCoefficient: case_.center_coefficient ?? 0, normalizer: p)
            #expect(abs(loss.item() - case_.loss) < 1e-6, "case \(index): \(loss.item()) vs TRL \(case_.loss)")
            loss.backward()
            #expect(errors(chosen.grad!.doubles(), case_.grad_chosen).maxAbs < 1e-9, "case \(index) chosen gradient")
            #expect(errors(rejected.grad!.doubles(), case_.grad_rejected).maxAbs < 1e-9, "case \(index) rejected gradient")
            let metrics = RewardPairStatistics(chosen: case_.chosen, rejected: case_.rejected).metrics
            for (key, value) in case_.metrics {
                #expect(abs(metrics[key]! - value) < 1e-6, "case \(index) \(key): \(metrics[key]!) vs TRL \(value)")
            }
        }
    }

    @Test("the sigmoid DPO loss (with and without the NLL term), its gradients and TRL's logged figures match")
    func dpoLossMatchesTRL() throws {
        for (index, case_) in try TRLFixture.load().dpo.enumerated() {
            let rows = case_.per_token_logps.count, length = case_.per_token_logps[0].count
            let tokens = Tensor(case_.per_token_logps.flatMap { $0 }, shape: [rows, length], requiresGrad: true)
            let reference = case_.reference_per_token_logps.map { $0.reduce(0, +) }
            let chosenTokens = case_.completion_mask.prefix(case_.pairs).flatMap { $0 }.reduce(0, +)
            let (loss, statistics) = directPreferenceLoss(tokenLogProbabilities: tokens, referenceSums: reference, beta: case_.beta,
                                                          nllWeight: case_.nll_weight, pairNormalizer: case_.pairs,
                                                          chosenTokenNormalizer: chosenTokens)
            #expect(abs(loss.item() - case_.loss) < 1e-6, "case \(index): \(loss.item()) vs TRL \(case_.loss)")
            loss.backward()
            // TRL's gradient reaches every position; only learned ones (mask 1) exist for us.
            let mask = case_.completion_mask.flatMap { $0 }
            let ours = zip(tokens.grad!.doubles(), mask).map { $1 == 1 ? $0 : 0 }
            #expect(errors(ours, case_.grad_per_token_logps.flatMap { $0 }).maxAbs < 1e-9, "case \(index) gradient")
            let metrics = statistics.metrics
            for key in ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"] {
                #expect(abs(metrics[key]! - case_.metrics[key]!) < 1e-6, "case \(index) \(key): \(metrics[key]!) vs TRL \(case_.metrics[key]!)")
            }
        }
    }

    @Test("the policy's and the reference's own preference accuracies count pairs whose chosen response has the higher log-probability")
    func ownPreferenceAccuracies() {
        var statistics = PreferenceStatistics(beta: 0.1)
        statistics.add(policyChosen: -1, policyRejected: -5, referenceChosen: -2, referenceRejected: -1)
        statistics.add(policyChosen: -3, policyRejected: -2, referenceChosen: -4, referenceRejected: -6)
        statistics.add(policyChosen: -1, policyRejected: -4, referenceChosen: -3, referenceRejected: -2)
        let metrics = statistics.metrics
        #expect(metrics["logps/accuracies"] == 2.0 / 3)
        #expect(metrics["reference/logps/accuracies"] == 1.0 / 3)
        // Implicit rewards (chosen, rejected): (0.1, −0.4), (0.1, 0.4), (0.2, −0.2): chosen ahead in two.
        #expect(metrics["rewards/accuracies"] == 2.0 / 3)
    }

    @Test("the EMA update of the reference equals TRL's SyncRefModelCallback")
    func emaMatchesTRL() throws {
        let ema = try TRLFixture.load().ema
        for (name, before) in ema.reference_before {
            let updated = exponentialMovingAverage(reference: Tensor(before, shape: [before.count]),
                                                   policy: Tensor(ema.policy[name]!, shape: [before.count]), alpha: ema.alpha)
            #expect(errors(updated.doubles(), ema.reference_after[name]!).maxAbs < 1e-12, "\(name)")
        }
    }

    /// `−log σ(x)` for x = ±40 is 40 + log(1 + e⁻⁴⁰) and e⁻⁴⁰ (a naive log(σ(x)) gives inf and 0):
    /// the stable form keeps both, and its gradient −σ(−x) matches central differences.
    @Test("negative log-sigmoid is stable at large |x| and its gradient matches central differences (float64)")
    func negativeLogSigmoidGradient() {
        let extreme = negativeLogSigmoid(Tensor([40.0, -40.0] as [Double], shape: [2])).doubles()
        #expect(abs(extreme[0] - Foundation.exp(-40)) < 1e-25 && abs(extreme[1] - 40) < 1e-12)
        let x = randomDoubles([7], in: -6...6, seed: 3)
        let failure = gradientCheck([x]) { negativeLogSigmoid($0[0]) }
        #expect(failure == nil, "\(failure ?? "")")
    }

    @Test("the reward and DPO losses' gradients match central differences (float64), margins, centring and NLL included")
    func lossGradients() {
        let chosen = randomDoubles([3], in: -2...2, seed: 5), rejected = randomDoubles([3], in: -2...2, seed: 6)
        let rewardFailure = gradientCheck([chosen, rejected]) {
            rewardPairLoss(chosen: $0[0], rejected: $0[1], margins: [0.1, 0.5, 0], centerCoefficient: 0.3, normalizer: 3)
        }
        #expect(rewardFailure == nil, "\(rewardFailure ?? "")")
        let tokens = randomDoubles([4, 5], in: -3...0, seed: 9)
        let dpoFailure = gradientCheck([tokens]) {
            directPreferenceLoss(tokenLogProbabilities: $0[0], referenceSums: [-4, -5, -6, -3], beta: 0.7, nllWeight: 0.2,
                                 pairNormalizer: 2, chosenTokenNormalizer: 10).loss
        }
        #expect(dpoFailure == nil, "\(dpoFailure ?? "")")
        let maskedFailure = gradientCheck([tokens]) {
            directPreferenceLoss(tokenLogProbabilities: $0[0], referenceSums: [-4, -5, -6, -3], beta: 0.7, nllWeight: 0.2,
                                 pairNormalizer: 1, chosenTokenNormalizer: 10, preferencePairs: [true, false]).loss
        }
        #expect(maskedFailure == nil, "\(maskedFailure ?? "")")
    }

    /// An on-policy anchor (an answer paired with itself) adds nothing to the DPO term, to its
    /// normaliser or to the figures; its chosen tokens count in the NLL term.
    @Test("a pair of a response with itself counts in the NLL term only")
    func anchorPairs() {
        let tokens = randomDoubles([4, 5], in: -3...0, seed: 9), reference = [-4.0, -5, -6, -3]
        let (beta, weight) = (0.7, 0.2)
        let (masked, statistics) = directPreferenceLoss(tokenLogProbabilities: tokens, referenceSums: reference, beta: beta, nllWeight: weight,
                                                        pairNormalizer: 1, chosenTokenNormalizer: 10, preferencePairs: [true, false])
        let sums = tokens.sum(axes: [1]).doubles()
        let z = beta * ((sums[0] - reference[0]) - (sums[2] - reference[2]))
        let expected = log(1 + exp(-z)) - weight * (sums[0] + sums[1]) / 10
        #expect(abs(masked.item() - expected) <= 1e-12 * abs(expected), "\(masked.item()) against \(expected)")
        #expect(statistics.policyChosen == [sums[0]] && statistics.referenceRejected == [reference[2]])
        // All flags true is TRL's loss.
        let all = directPreferenceLoss(tokenLogProbabilities: tokens, referenceSums: reference, beta: beta, nllWeight: weight,
                                       pairNormalizer: 2, chosenTokenNormalizer: 10, preferencePairs: [true, true]).loss.item()
        let trl = directPreferenceLoss(tokenLogProbabilities: tokens, referenceSums: reference, beta: beta, nllWeight: weight,
                                       pairNormalizer: 2, chosenTokenNormalizer: 10).loss.item()
        #expect(all == trl)
    }
}
