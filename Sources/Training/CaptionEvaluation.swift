import Foundation

/// One way of asking a model to describe the held-out pictures.
public struct DescriptionRequest: Sendable {
    /// `.chat`: one chat turn, the image then the sample's prompt; `.caption`: the image alone,
    /// continued as a pretraining caption.
    public var layout: QuestionAnswering.PromptLayout
    /// Every picture black: what the model says without seeing it.
    public var blankImages: Bool

    public init(layout: QuestionAnswering.PromptLayout, blankImages: Bool = false) {
        self.layout = layout
        self.blankImages = blankImages
    }
}

/// Caption accuracy of the model in `directory`, once per request (the model is opened once): its
/// greedy descriptions of `samples`, each scored by the sample's scorer — the mean share of stated
/// attributes that are true and the mean share of the scene's objects mentioned. A text-only model
/// describes without the image: the no-vision baseline.
public func captionScores(directory: URL, samples: [CaptionSample],
                          requests: [DescriptionRequest]) throws -> [(accuracy: Double, recall: Double)] {
    let (model, encoder) = try openForEvaluation(directory: directory, maxLength: 2048)
    return try requests.map {
        try ComparisonMeasurements.captionScores(model: model, processor: encoder.processor, samples: samples, layout: $0.layout,
                                                 blankImages: $0.blankImages)
    }
}
