import Foundation

/// What a running pipeline reports; the command line turns these into progress lines.
public enum TrainingEvent: Sendable {
    /// A stage begins (or resumes from `resumedAtStep`).
    case stageStarted(stage: String, kind: StageKind, totalSteps: Int, resumedAtStep: Int?)
    /// A finished stage whose settings and input did not change is not run again.
    case stageSkipped(stage: String, output: URL)
    /// One optimiser step.
    case step(stage: String, step: Int, totalSteps: Int, report: StepReport, tokensPerSecond: Double,
              dataWaitSeconds: Double, elapsedSeconds: Double)
    /// Evaluation results at a step.
    case evaluation(stage: String, step: Int, metrics: [String: Double])
    /// A run checkpoint was written.
    case checkpoint(stage: String, step: Int)
    /// Something was skipped or looked wrong, and the run goes on.
    case warning(String)
    /// A stage finished; its summary.
    case stageFinished(StageSummary)
}

/// What a stage did, written as `summary.json` in its folder.
public struct StageSummary: Codable, Sendable {
    public var stage: String
    public var kind: StageKind
    public var steps: Int
    public var samples: Int
    public var firstLoss: Double?
    public var finalLoss: Double?
    public var skippedSteps: Int
    /// Samples skipped, by cause.
    public var skippedSamples: [String: Int]
    public var trainableParameters: Int
    public var seconds: Double
    public var tokensPerSecond: Double
    public var dataWaitSeconds: Double
    /// Evaluation metrics at the end of the stage (with images, and with images blanked).
    public var evaluation: [String: Double]
    /// Whether the output's text-only logits equal the base model's bit for bit (nil: not checked).
    public var textOnlyLogitsUnchanged: Bool?
    /// The stage's output model folder.
    public var output: String
}
