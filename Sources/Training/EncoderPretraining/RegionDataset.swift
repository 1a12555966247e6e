import Foundation

/// A box in an image's pixels with a label per field: `{"box": [x0, y0, x1, y1], "shape": "circle", "color": "red"}`
/// (x1 and y1 exclusive).
public struct LabelledRegion: Sendable, Equatable {
    public var x0: Int, y0: Int, x1: Int, y1: Int
    /// Field name → label.
    public var labels: [String: String]

    public init(x0: Int, y0: Int, x1: Int, y1: Int, labels: [String: String]) {
        (self.x0, self.y0, self.x1, self.y1) = (x0, y0, x1, y1)
        self.labels = labels
    }

    func contains(x: Double, y: Double) -> Bool { Double(x0) <= x && x < Double(x1) && Double(y0) <= y && y < Double(y1) }
}

/// One image with its labelled regions: a line of a regions file (what `vlm data synth` writes as
/// `regions.jsonl`): `{"id": …, "image": "images/000001.png", "regions": [LabelledRegion, …]}`.
public struct RegionRecord: Sendable, Equatable {
    public var id: String
    public var location: RecordLocation
    public var image: ImageSource
    public var regions: [LabelledRegion]
}

/// A regions file read whole: its records, and the label classes of every field.
public struct RegionDataset: Sendable {
    public var records: [RegionRecord]
    public var classes: PatchLabelClasses

    public init(records: [RegionRecord], classes: PatchLabelClasses) {
        self.records = records
        self.classes = classes
    }

    /// Reads a JSONL regions file; image paths are relative to the file's folder.
    /// - Throws: ``DataIssue`` naming the file, line and field of the first bad record, or a file
    ///   that cannot be read or holds no record.
    public init(path: String) throws {
        let url = URL(fileURLWithPath: path)
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw DataIssue(.malformedRecord, at: RecordLocation(file: path, place: "-"), "cannot read the file (\(error.localizedDescription))")
        }
        let paths = ImagePaths(root: url.deletingLastPathComponent())
        var records: [RegionRecord] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        where !line.allSatisfy(\.isWhitespace) {
            let location = RecordLocation(file: path, line: index + 1)
            records.append(try Self.record(JSONFields(parsing: Data(line.utf8), at: location), paths: paths,
                                           defaultID: "\(url.lastPathComponent):\(index + 1)"))
        }
        guard !records.isEmpty else { throw DataIssue(.malformedRecord, at: RecordLocation(file: path, place: "-"), "no records") }
        self.records = records
        classes = PatchLabelClasses(records: records)
    }

    static func record(_ fields: JSONFields, paths: ImagePaths, defaultID: String) throws(DataIssue) -> RegionRecord {
        let image = try fields.string("image")
        guard let list = fields.object["regions"] as? [Any] else {
            throw fields.has("regions") ? DataIssue(.malformedRecord, at: fields.location, field: "regions", "expected a list of regions")
                : fields.missing("regions")
        }
        var regions: [LabelledRegion] = []
        for (index, item) in list.enumerated() {
            let field = "regions[\(index)]"
            let region = try JSONFields(item, at: fields.location, field: field)
            let box = region.object["box"] as? [Any] ?? []
            let corners = box.compactMap { ($0 as? NSNumber)?.intValue }
            guard box.count == 4, corners.count == 4, corners[0] < corners[2], corners[1] < corners[3] else {
                throw DataIssue(.malformedRecord, at: fields.location, field: field + ".box", "expected [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
            }
            var labels: [String: String] = [:]
            for (key, value) in region.object where key != "box" {
                guard let label = value as? String, !label.isEmpty else {
                    throw DataIssue(.malformedRecord, at: fields.location, field: "\(field).\(key)", "a label must be a non-empty string")
                }
                labels[key] = label
            }
            guard !labels.isEmpty else {
                throw DataIssue(.malformedRecord, at: fields.location, field: field, "a region needs at least one label besides \"box\"")
            }
            regions.append(LabelledRegion(x0: corners[0], y0: corners[1], x1: corners[2], y1: corners[3], labels: labels))
        }
        return RegionRecord(id: fields.id ?? defaultID, location: fields.location, image: paths.source(image), regions: regions)
    }
}

/// The classes the encoder learns to name on each patch: per field (sorted by name), class 0 is
/// "no region here" and classes 1… are the field's labels in sorted order.
public struct PatchLabelClasses: Codable, Sendable, Equatable {
    public var fields: [String]
    /// Per field, its labels (class k + 1 is `labels[field][k]`).
    public var labels: [[String]]

    public init(fields: [String], labels: [[String]]) {
        self.fields = fields
        self.labels = labels
    }

    /// Every field and label that occurs in `records`.
    public init(records: [RegionRecord]) {
        var seen: [String: Set<String>] = [:]
        for record in records { for region in record.regions { for (field, label) in region.labels { seen[field, default: []].insert(label) } } }
        fields = seen.keys.sorted()
        labels = fields.map { seen[$0]!.sorted() }
    }

    /// Classes per field, "none" included.
    public var classCounts: [Int] { labels.map { $0.count + 1 } }

    /// The class every field gets on a patch that is not trained on or counted (a tile slot past
    /// the image's tiles, or the canvas's padding): the cross-entropy's ignore index.
    public static let ignored = -100

    /// The class of every patch and field, `(P·F)` row-major, for an image of `side`×`side` pixels
    /// cut into a `grid`×`grid` patch grid: the last listed region containing the patch's centre
    /// names it; a field the region lacks, an unknown label, or no region gives class 0.
    public func patchClasses(_ regions: [LabelledRegion], imageSide: Int, grid: Int) -> [Int] {
        let step = Double(imageSide) / Double(grid)
        return patchClasses(regions, grid: grid) { px, py in ((Double(px) + 0.5) * step, (Double(py) + 0.5) * step) }
    }

    /// The class of every patch and field of one `grid`×`grid` patch grid, `(P·F)` row-major, where
    /// `centre(px, py)` is the patch's centre in the boxes' pixels, or nil for a patch outside the
    /// image (``ignored`` in every field). Otherwise named as in ``patchClasses(_:imageSide:grid:)``.
    func patchClasses(_ regions: [LabelledRegion], grid: Int, centre: (Int, Int) -> (x: Double, y: Double)?) -> [Int] {
        var classes = [Int](repeating: 0, count: grid * grid * fields.count)
        for py in 0..<grid {
            for px in 0..<grid {
                let patch = (py * grid + px) * fields.count
                guard let (x, y) = centre(px, py) else {
                    for f in fields.indices { classes[patch + f] = Self.ignored }
                    continue
                }
                guard let region = regions.last(where: { $0.contains(x: x, y: y) }) else { continue }
                for (f, field) in fields.enumerated() {
                    if let label = region.labels[field], let k = labels[f].firstIndex(of: label) {
                        classes[patch + f] = k + 1
                    }
                }
            }
        }
        return classes
    }
}
