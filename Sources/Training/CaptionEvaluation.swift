import Foundation

/// Caption accuracy of the model in `directory`: its greedy descriptions of `samples` — in the
/// `.chat` layout one chat turn (the image, then the sample's prompt), in the `.caption` layout the
/// image alone continued as a pretraining caption — each scored by the sample's scorer: the mean
/// share of stated attributes that are true and the mean share of the scene's objects mentioned. A
/// text-only model describes without the image: the no-vision baseline. With `blankImages` every
/// picture is black: the same model's descriptions without seeing it.
public func captionScores(directory: URL, samples: [CaptionSample], layout: QuestionAnswering.PromptLayout = .chat,
                          blankImages: Bool = false) throws -> (accuracy: Double, recall: Double) {
    let (model, encoder) = try openForEvaluation(directory: directory, maxLength: 2048)
    return try ComparisonMeasurements.captionScores(model: model, processor: encoder.processor, samples: samples, layout: layout,
                                                    blankImages: blankImages)
}
