import Checkpoint
import Foundation
import Media
import Processing
import Testing
import TensorCore
@testable import Training

@Suite("Patch labels from region boxes")
struct PatchLabelTests {
    static func region(_ box: [Int], _ labels: [String: String]) -> LabelledRegion {
        LabelledRegion(x0: box[0], y0: box[1], x1: box[2], y1: box[3], labels: labels)
    }

    @Test("fields and labels are sorted, class 0 is no region, and the last region holding a patch's centre names it")
    func classes() throws {
        let a = Self.region([0, 0, 8, 8], ["shape": "square", "color": "red"])
        let b = Self.region([4, 4, 16, 16], ["shape": "circle", "color": "blue"])
        let location = RecordLocation(file: "r.jsonl", line: 1)
        let classes = PatchLabelClasses(records: [RegionRecord(id: "0", location: location, image: .file(URL(fileURLWithPath: "/x.png")),
                                                               regions: [a, b])])
        #expect(classes.fields == ["color", "shape"])
        #expect(classes.labels == [["blue", "red"], ["circle", "square"]])
        #expect(classes.classCounts == [3, 3])
        // A 16-pixel image in a 4×4 grid: patch centres at 2, 6, 10, 14.
        let labels = classes.patchClasses([a, b], imageSide: 16, grid: 4)
        func at(_ x: Int, _ y: Int) -> [Int] { Array(labels[((y * 4 + x) * 2)..<((y * 4 + x) * 2 + 2)]) }
        #expect(at(0, 0) == [2, 2], "red square")
        #expect(at(1, 1) == [1, 1], "both boxes hold (6, 6): the later region, a blue circle, names it")
        #expect(at(3, 3) == [1, 1] && at(3, 0) == [0, 0] && at(0, 3) == [0, 0])
        // Scaled: the same boxes on a 32-pixel tile give the same classes.
        #expect(classes.patchClasses([Self.region([0, 0, 16, 16], a.labels), Self.region([8, 8, 32, 32], b.labels)],
                                     imageSide: 32, grid: 4) == labels)
    }

    @Test("a field the region lacks or a label unseen in training is class 0")
    func missingAndUnknown() {
        let classes = PatchLabelClasses(fields: ["color", "shape"], labels: [["red"], ["square"]])
        let labels = classes.patchClasses([Self.region([0, 0, 4, 4], ["color": "green", "shape": "square"])], imageSide: 4, grid: 1)
        #expect(labels == [0, 1])
    }

    static func processor(tileSize: Int, maxImageTiles: Int) throws -> MllamaImageProcessor {
        try MllamaImageProcessor(config: MllamaImageProcessorConfig(size: .init(height: tileSize, width: tileSize), resample: 2,
                                                                    imageMean: [0.5, 0.5, 0.5], imageStd: [0.5, 0.5, 0.5],
                                                                    maxImageTiles: maxImageTiles))
    }

    @Test("a wide image's patches are labelled on the tiles the processor cuts, through its resize; padding and unused tiles are ignored")
    func tiledLabels() throws {
        let classes = PatchLabelClasses(fields: ["shape"], labels: [["square"]])
        let processor = try Self.processor(tileSize: 16, maxImageTiles: 2)
        let ignored = PatchLabelClasses.ignored
        // 24×16 pixels: a 1×2 canvas of 16-pixel tiles, not resized; the second tile's right half
        // (patch centres at x = 28) is padding. The box covers the second tile's top-left patch.
        let wide = tilePatchClasses([Self.region([16, 0, 24, 8], ["shape": "square"])], classes: classes,
                                    width: 24, height: 16, processor: processor, grid: 2)
        #expect(wide == [0, 0, 0, 0, 1, ignored, 0, ignored])
        // 48×32 is resized to 24×16 on the same canvas: the same box at twice the size gives the same classes.
        #expect(tilePatchClasses([Self.region([32, 0, 48, 16], ["shape": "square"])], classes: classes,
                                 width: 48, height: 32, processor: processor, grid: 2) == wide)
        // A square image takes one tile: the second tile slot is ignored; the first is labelled as
        // by the one-tile rule.
        let square = tilePatchClasses([Self.region([0, 0, 8, 8], ["shape": "square"])], classes: classes,
                                      width: 16, height: 16, processor: processor, grid: 2)
        #expect(square == classes.patchClasses([Self.region([0, 0, 8, 8], ["shape": "square"])], imageSide: 16, grid: 2)
                + [ignored, ignored, ignored, ignored])
    }

    @Test("on a two-tile model the loss is the mean over the patches of the images' own tiles, padding and unused slots left out")
    func tiledLoss() throws {
        let scratch = try TemporaryDirectory()
        func png(_ name: String, width: Int, height: Int) throws -> ImageSource {
            var pixels = [UInt8](repeating: 0, count: width * height * 3)
            for i in pixels.indices { pixels[i] = UInt8((i * 37 + width) % 251) }
            let url = scratch.url.appendingPathComponent(name)
            try PNGEncoder.encode(Image(width: width, height: height, layout: .rgb, pixels: pixels)).write(to: url)
            return .file(url)
        }
        let location = RecordLocation(file: "regions.jsonl", line: 1)
        let records = [
            RegionRecord(id: "square", location: location, image: try png("a.png", width: 28, height: 28),
                         regions: [Self.region([0, 0, 14, 14], ["shape": "circle", "color": "red"])]),
            RegionRecord(id: "wide", location: location, image: try png("b.png", width: 56, height: 28),
                         regions: [Self.region([28, 14, 56, 28], ["shape": "square", "color": "blue"])]),
        ]
        let classes = PatchLabelClasses(records: records)
        let processor = try Self.processor(tileSize: 28, maxImageTiles: 2)
        let batch = try patchLabelBatch(records, classes: classes, processor: processor, grid: 2)
        #expect(batch.labels.shape == [2, 8, 2])
        #expect(batch.lossTokenCount == 4 + 8, "the square image's second slot is not trained on")
        let model = PatchLabelModel(model: tinyTrainingModel(), classCounts: classes.classCounts, seed: 5)
        let logits = model.patchLogits(batch.inputs).map { $0.floats() }
        let targets = batch.labels.integers()
        var total = 0.0, counted = 0
        for patch in 0..<16 where targets[patch * 2] != PatchLabelClasses.ignored {
            counted += 1
            for (field, scores) in logits.enumerated() {
                let c = classes.classCounts[field]
                let row = scores[(patch * c)..<((patch + 1) * c)].map(Double.init)
                let top = row.max()!
                total += top + log(row.map { exp($0 - top) }.reduce(0, +)) - row[row.startIndex + targets[patch * 2 + field]]
            }
        }
        #expect(counted == 12)
        let loss = patchLabelLoss(model: model, batch: batch, fieldCount: 2).item()
        #expect(abs(loss - total / Double(counted)) < 1e-5, "\(loss) against \(total / Double(counted))")
        // The wide image's box is its second tile's bottom row, both patches.
        #expect(Array(targets[(8 + 6) * 2..<(8 + 8) * 2]) == [1, 2, 1, 2])
    }

    @Test("a box past the image's edge (x and y swapped on a wide image) is an error naming the line, the box and the image's size")
    func boxOutsideImage() throws {
        let scratch = try TemporaryDirectory()
        let url = scratch.url.appendingPathComponent("wide.png")
        try PNGEncoder.encode(Image(width: 56, height: 28, layout: .rgb, pixels: [UInt8](repeating: 90, count: 56 * 28 * 3))).write(to: url)
        let inside = Self.region([28, 0, 56, 28], ["shape": "square"]), swapped = Self.region([0, 28, 28, 56], ["shape": "square"])
        let record = { (regions: [LabelledRegion]) in
            RegionRecord(id: "wide", location: RecordLocation(file: "regions.jsonl", line: 3), image: .file(url), regions: regions)
        }
        let classes = PatchLabelClasses(records: [record([inside])])
        let processor = try Self.processor(tileSize: 28, maxImageTiles: 2)
        _ = try patchLabelBatch([record([inside])], classes: classes, processor: processor, grid: 2)
        #expect(throws: DataIssue.self) { try patchLabelBatch([record([inside, swapped])], classes: classes, processor: processor, grid: 2) }
        do {
            _ = try patchLabelBatch([record([inside, swapped])], classes: classes, processor: processor, grid: 2)
        } catch {
            let message = "\(error)"
            #expect(message.contains("regions.jsonl:3") && message.contains("regions[1].box") && message.contains("56×28"), "\(message)")
        }
    }
}
