import Models
import TensorCore

/// PLACEHOLDER until the data layer lands: one micro-batch.
public struct TrainingBatch {
    public var inputs: ModelInputs
    public var labels: Tensor
    public var lossTokenCount: Int
    public var sampleIDs: [String]
    public init(inputs: ModelInputs, labels: Tensor, lossTokenCount: Int, sampleIDs: [String]) {
        self.inputs = inputs
        self.labels = labels
        self.lossTokenCount = lossTokenCount
        self.sampleIDs = sampleIDs
    }
}
