import Foundation
import Models
import TensorCore

/// How the model in `directory` ranks the preference pairs of `dataset` (TRL's preference format):
/// the log-probability it gives each pair's chosen and rejected responses (summed over the response
/// tokens), as `preference/logps/chosen`, `preference/logps/rejected` and
/// `preference/logps/accuracies` (how often the chosen response is the more likely one), and the
/// number of pairs (`preference/pairs`).
///
/// With a `reference` model (a DPO stage's input), TRL's implicit-reward figures as well —
/// `preference/rewards/accuracies`, `…/margins`, `…/chosen`, `…/rejected` with rewards
/// `beta · (π − ρ)` — the reference's own `preference/reference/logps/accuracies`, and
/// `preference/log_ratio`, the mean of π − ρ over both responses (the drift from the reference).
/// Both models must read the same tokenizer.
public func evaluatePreferencePairs(directory: URL, dataset: URL, reference: URL? = nil, beta: Double = 0.1,
                                    maxSamples: Int = 0, maxLength: Int = 2048) throws -> [String: Double] {
    let (policy, samples) = try openForEvaluation(directory: directory, maxLength: maxLength)
    let referenceModel = try reference.map { try openForEvaluation(directory: $0, maxLength: maxLength).model }
    if let reference, let referenceModel {
        // The pairs are encoded once, for the policy: the reference must read the same inputs.
        let processorFile = "preprocessor_config.json"
        let sameProcessor = FileManager.default.contents(atPath: directory.appendingPathComponent(processorFile).path)
            == FileManager.default.contents(atPath: reference.appendingPathComponent(processorFile).path)
        guard ObjectIdentifier(type(of: referenceModel)) == ObjectIdentifier(type(of: policy)), try ModelDataLayout(referenceModel) == ModelDataLayout(policy), sameProcessor else {
            throw TrainingError("the reference \(reference.path) is not the same kind of model as \(directory.path) "
                                + "(architecture, vocabulary, <|image|> id and image processor must match: a DPO stage's input and output)")
        }
    }
    let source = DataSource(try Dataset(path: dataset.path))
    let statistics = try evaluatePreferences([source], encoder: PreferenceEncoder(samples: samples), maxSamples: maxSamples,
                                             blankImages: false, includesEdited: false) { batch, _ in
        preferenceStatistics(policy: policy, reference: referenceModel, batch: batch, beta: beta)
    }
    let ownFigures: Set = ["logps/chosen", "logps/rejected", "logps/accuracies"]
    var metrics: [String: Double] = ["preference/pairs": Double(statistics.policyChosen.count)]
    for (key, value) in statistics.metrics where reference != nil || ownFigures.contains(key) {
        metrics["preference/" + key] = value
    }
    return metrics.filter { $0.value.isFinite }
}

/// TRL's DPO figures of one preference batch, without a graph: the policy's and the reference's
/// log-probabilities summed over each response (no reference: the policy is its own, and every
/// implicit reward is 0).
func preferenceStatistics(policy: any TrainableLanguageModel, reference: (any TrainableLanguageModel)?, batch: TrainingBatch,
                          beta: Double) -> PreferenceStatistics {
    withNoGrad {
        let tokens = labelLogProbabilities(model: policy, inputs: batch.inputs, labels: batch.labels)
        let referenceTokens = reference.map { labelLogProbabilities(model: $0, inputs: batch.inputs, labels: batch.labels) } ?? tokens
        return directPreferenceLoss(tokenLogProbabilities: tokens, referenceSums: referenceTokens.sum(axes: [1]).doubles(), beta: beta,
                                    pairNormalizer: 1, chosenTokenNormalizer: 1).statistics
    }
}
