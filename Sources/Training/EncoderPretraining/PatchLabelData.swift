import Foundation
import Media
import Models
import Processing
import TensorCore

// Shapes: B images, P patches of a tile, F label fields.

/// An `encoder` stage's micro-batches: images of a regions file in a seeded order (a new
/// permutation every epoch, a pure function of the seed and the epoch), each with the class of
/// every patch and field. Its position is the number of images drawn.
final class PatchLabelStream: TrainingDataStream {
    let dataset: RegionDataset
    let processor: MllamaImageProcessor
    let grid: Int
    let microBatchSize: Int
    let seed: UInt64
    private(set) var samplesSeen: Int
    var dataWaitSeconds: Double { 0 }
    var skipCounts: [String: Int] { [:] }
    private var permutation: (epoch: Int, order: [Int]) = (-1, [])

    init(dataset: RegionDataset, processor: MllamaImageProcessor, grid: Int, microBatchSize: Int, seed: UInt64, samplesSeen: Int = 0) {
        self.dataset = dataset
        self.processor = processor
        self.grid = grid
        self.microBatchSize = microBatchSize
        self.seed = seed
        self.samplesSeen = samplesSeen
    }

    func nextBatch() throws -> TrainingBatch {
        let count = dataset.records.count
        var records: [RegionRecord] = []
        for _ in 0..<microBatchSize {
            let epoch = samplesSeen / count
            if permutation.epoch != epoch { permutation = (epoch, Self.order(count: count, seed: seed, epoch: epoch)) }
            records.append(dataset.records[permutation.order[samplesSeen % count]])
            samplesSeen += 1
        }
        return try patchLabelBatch(records, classes: dataset.classes, processor: processor, grid: grid)
    }

    func savePosition() throws -> Data { try JSONEncoder().encode(["images_drawn": samplesSeen]) }

    static func position(_ data: Data) throws -> Int {
        guard let drawn = try JSONDecoder().decode([String: Int].self, from: data)["images_drawn"] else {
            throw TrainingError("the checkpoint's data position is not an encoder stage's")
        }
        return drawn
    }

    /// The epoch's order of `0..<count`, seeded from the seed and the epoch.
    static func order(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        DataOrder.shuffledIndices(count: count, seed: DataOrder.derive(seed, 0x7061_7463_68, UInt64(epoch)))
    }
}

/// The images of `records` through the image processor, with labels `(B, P, F)`: the boxes are
/// scaled from each image's pixels to the encoder's tile.
/// - Throws: ``DataIssue`` naming the line of an image that cannot be read, is not square, or
///   does not fit one tile.
func patchLabelBatch(_ records: [RegionRecord], classes: PatchLabelClasses, processor: MllamaImageProcessor,
                     grid: Int) throws -> TrainingBatch {
    var images: [Image] = [], labels: [Int] = []
    for record in records {
        let image = try ImageLoading.load(record.image, for: record.location)
        guard image.width == image.height else {
            throw DataIssue(.undecodableImage, at: record.location, field: "image",
                            "\(record.image.name) is \(image.width)×\(image.height); region pretraining reads square images")
        }
        let scale = Double(processor.tileSize) / Double(image.width)
        let scaled = record.regions.map { r in
            LabelledRegion(x0: Int((Double(r.x0) * scale).rounded()), y0: Int((Double(r.y0) * scale).rounded()),
                           x1: Int((Double(r.x1) * scale).rounded()), y1: Int((Double(r.y1) * scale).rounded()), labels: r.labels)
        }
        images.append(image)
        labels += classes.patchClasses(scaled, imageSide: processor.tileSize, grid: grid)
    }
    let processed: MllamaImageBatch
    do { processed = try processor.preprocess(images.map { [$0] }) } catch {
        throw DataIssue(.undecodableImage, at: records[0].location, "\(error)")
    }
    if let index = processed.numTiles.firstIndex(where: { $0 != [1] }) {
        throw DataIssue(.undecodableImage, at: records[index].location, field: "image",
                        "\(records[index].image.name) takes \(processed.numTiles[index]) tiles; region pretraining reads one-tile images (at most \(processor.tileSize) px)")
    }
    let b = records.count
    let inputs = ModelInputs(inputIDs: Tensor(indices: Array(repeating: 0, count: b), shape: [b, 1]),
                             pixelValues: processed.pixelValues, aspectRatioIDs: processed.aspectRatioIDs,
                             aspectRatioMask: processed.aspectRatioMask)
    return TrainingBatch(inputs: inputs, labels: Tensor(indices: labels, shape: [b, grid * grid, classes.fields.count]),
                         lossTokenCount: b * grid * grid, sampleIDs: records.map(\.id))
}
