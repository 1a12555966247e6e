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

/// The images of `records` through the image processor, with labels `(B, X·P, F)` for every
/// patch of every tile slot (X = the processor's `max_image_tiles`), from ``tilePatchClasses``.
/// - Throws: ``DataIssue`` naming the line of an image that cannot be read or processed.
func patchLabelBatch(_ records: [RegionRecord], classes: PatchLabelClasses, processor: MllamaImageProcessor,
                     grid: Int) throws -> TrainingBatch {
    var images: [Image] = [], labels: [Int] = []
    for record in records {
        let image = try ImageLoading.load(record.image, for: record.location)
        try checkBoxesInside(record, width: image.width, height: image.height)
        images.append(image)
        labels += tilePatchClasses(record.regions, classes: classes, width: image.width, height: image.height,
                                   processor: processor, grid: grid)
    }
    let processed: MllamaImageBatch
    do { processed = try processor.preprocess(images.map { [$0] }) } catch {
        throw DataIssue(.undecodableImage, at: records[0].location, "\(error)")
    }
    let b = records.count, slots = processor.config.maxImageTiles
    let inputs = ModelInputs(inputIDs: Tensor(indices: Array(repeating: 0, count: b), shape: [b, 1]),
                             pixelValues: processed.pixelValues, aspectRatioIDs: processed.aspectRatioIDs,
                             aspectRatioMask: processed.aspectRatioMask)
    let trained = stride(from: 0, to: labels.count, by: classes.fields.count).filter { labels[$0] != PatchLabelClasses.ignored }.count
    return TrainingBatch(inputs: inputs, labels: Tensor(indices: labels, shape: [b, slots * grid * grid, classes.fields.count]),
                         lossTokenCount: trained, sampleIDs: records.map(\.id))
}

/// Every box of `record` must lie in its `width`×`height` image: a box past the edge is most often
/// a box in other coordinates (normalised, or x and y swapped), which would label the wrong patches.
/// - Throws: ``DataIssue`` naming the line, the region's box and the image's size.
func checkBoxesInside(_ record: RegionRecord, width: Int, height: Int) throws(DataIssue) {
    for (index, region) in record.regions.enumerated()
    where region.x0 < 0 || region.y0 < 0 || region.x1 > width || region.y1 > height {
        throw DataIssue(.malformedRecord, at: record.location, field: "regions[\(index)].box",
                        "[\(region.x0), \(region.y0), \(region.x1), \(region.y1)] is not inside the \(width)×\(height) image "
                        + "(boxes are [x0, y0, x1, y1] in the image's pixels, x1 and y1 exclusive)")
    }
}

/// The classes `(X·P·F)` of every patch of an image's tile slots as the Mllama processor lays the
/// image out: resized (aspect kept) onto the top left of a canvas of whole tiles, cut into tiles
/// row by row, each tile into `grid`×`grid` patches. Each patch's centre is mapped back to the
/// image's pixels, where the boxes are, and named by ``PatchLabelClasses/patchClasses(_:imageSide:grid:)``'s
/// rule; patches on the canvas's padding and the slots past the image's tiles are
/// ``PatchLabelClasses/ignored``.
func tilePatchClasses(_ regions: [LabelledRegion], classes: PatchLabelClasses, width: Int, height: Int,
                      processor: MllamaImageProcessor, grid: Int) -> [Int] {
    let (arrangement, resizedHeight, resizedWidth) = processor.layout(height: height, width: width)
    let t = Double(processor.tileSize), step = t / Double(grid)
    let (toImageX, toImageY) = (Double(width) / Double(resizedWidth), Double(height) / Double(resizedHeight))
    var labels: [Int] = []
    for slot in 0..<processor.config.maxImageTiles {
        let (row, column) = (slot / arrangement.columns, slot % arrangement.columns)
        labels += classes.patchClasses(regions, grid: grid) { px, py in
            guard slot < arrangement.rows * arrangement.columns else { return nil }
            let x = Double(column) * t + (Double(px) + 0.5) * step, y = Double(row) * t + (Double(py) + 0.5) * step
            guard x < Double(resizedWidth), y < Double(resizedHeight) else { return nil }
            return (x * toImageX, y * toImageY)
        }
    }
    return labels
}
