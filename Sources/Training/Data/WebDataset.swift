import Foundation

/// Webdataset tar shards as img2dataset writes them: members grouped by key (the member path up to
/// the first dot of its file name), each sample an image (`KEY.jpg`, `KEY.jpeg` or `KEY.png`) and its
/// caption (`KEY.txt`); other members (`KEY.json` metadata) are ignored.
struct WebDatasetIndex: Sendable {
    struct Sample: Sendable {
        var shard: Int
        var key: String
        var image: TarMember?
        var text: TarMember?
    }

    let shards: [TarArchive]
    let samples: [Sample]
    /// Shards whose scan stopped at a corrupt header or truncated member: each becomes one malformed sample.
    let shardIssues: [DataIssue]

    static let imageExtensions: Set<String> = ["jpg", "jpeg", "png"]

    init(shardURLs: [URL], names: [String]) throws {
        var shards: [TarArchive] = [], samples: [Sample] = [], issues: [DataIssue] = []
        for (index, (url, name)) in zip(shardURLs, names).enumerated() {
            let archive = try TarArchive(url: url, name: name)
            shards.append(archive)
            if let issue = archive.issue { issues.append(issue) }
            for member in archive.members {
                let (key, suffix) = Self.split(member.name)
                if samples.last?.shard != index || samples.last?.key != key {
                    samples.append(Sample(shard: index, key: key))
                }
                if Self.imageExtensions.contains(suffix) { samples[samples.count - 1].image = member }
                if suffix == "txt" { samples[samples.count - 1].text = member }
            }
        }
        self.shards = shards
        self.samples = samples
        self.shardIssues = issues
    }

    var count: Int { samples.count + shardIssues.count }

    func record(at index: Int) -> Result<DatasetRecord, DataIssue> {
        guard index < samples.count else { return .failure(shardIssues[index - samples.count]) }
        let sample = samples[index]
        let shard = shards[sample.shard]
        let anyMember = sample.image?.name ?? sample.text?.name ?? sample.key
        let location = RecordLocation(file: shard.name, place: anyMember)
        guard let imageMember = sample.image else {
            return .failure(DataIssue(.malformedRecord, at: location, field: sample.key,
                                      "no image member (\(sample.key).jpg, .jpeg or .png)"))
        }
        guard let textMember = sample.text else {
            return .failure(DataIssue(.malformedRecord, at: location, field: sample.key, "no caption member (\(sample.key).txt)"))
        }
        let text: String, image: [UInt8]
        do {
            text = String(decoding: try shard.read(textMember), as: UTF8.self)
            image = try shard.read(imageMember)
        } catch {
            return .failure(DataIssue(.malformedRecord, at: location, "\(error)"))
        }
        guard !text.allSatisfy(\.isWhitespace) else {
            return .failure(DataIssue(.emptyText, at: RecordLocation(file: shard.name, place: textMember.name), "empty caption"))
        }
        let trimmed = text.hasSuffix("\n") ? String(text.dropLast()) : text
        return .success(DatasetRecord(id: sample.key, location: location,
                                      images: [.embedded(name: "\(shard.name):\(imageMember.name)", bytes: image)],
                                      content: .caption(trimmed)))
    }

    /// `"dir/000123.jpg"` → (`"dir/000123"`, `"jpg"`): the key ends at the first dot of the file name.
    static func split(_ name: String) -> (key: String, suffix: String) {
        let slash = name.lastIndex(of: "/").map { name.index(after: $0) } ?? name.startIndex
        guard let dot = name[slash...].firstIndex(of: ".") else { return (name, "") }
        return (String(name[..<dot]), name[name.index(after: dot)...].lowercased())
    }

    /// The shard files a path names: a directory (its `*.tar`, sorted), a brace range
    /// `shards/{00000..00003}.tar` (zero-padded as written), or one file.
    static func expandShards(_ path: String) throws -> [String] {
        if let open = path.firstIndex(of: "{"), let close = path[open...].firstIndex(of: "}") {
            let inside = path[path.index(after: open) ..< close]
            let bounds = inside.components(separatedBy: "..")
            guard bounds.count == 2, let first = Int(bounds[0]), let last = Int(bounds[1]), first <= last else {
                throw DataError("\(path): a shard range must read {FIRST..LAST} with FIRST <= LAST, e.g. {00000..00009}")
            }
            let width = bounds[0].count
            let head = path[..<open], tail = path[path.index(after: close)...]
            return (first ... last).map { number in
                let digits = String(number)
                return head + String(repeating: "0", count: max(0, width - digits.count)) + digits + tail
            }
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            let names = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".tar") }.sorted()
            guard !names.isEmpty else { throw DataError("\(path): the directory has no .tar shards") }
            return names.map { (path as NSString).appendingPathComponent($0) }
        }
        return [path]
    }
}
