import Foundation
import Testing
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
}
