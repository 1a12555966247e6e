import Foundation

/// The dataset file formats VLMKit reads (see Docs/training.md, "Data formats and loss masks").
public enum DatasetFormat: String, Sendable, Codable, CaseIterable {
    /// JSONL `{"image": "a.png", "text": "…"}`: image–text pairs.
    case pairs
    /// Webdataset tar shards: `KEY.jpg`/`KEY.jpeg`/`KEY.png` + `KEY.txt` members.
    case webdataset
    /// LLaVA JSON (a list of `{"id", "image", "conversations"}`), or the same objects one per JSONL line.
    case llava
    /// TRL / Hugging Face JSONL `{"images": […], "messages": [{"role", "content"}]}`.
    case messages
    /// JSONL `{"image", "question", "answer", "type"}`: questions with reference answers.
    case questions
    /// TRL preference JSONL `{"images", "prompt", "chosen", "rejected", "edited"}`.
    case preference
    /// Plain text (`.txt`), one document per non-empty line: text-only language modelling (a base
    /// Llama's pretraining). JSONL pairs without an `image` are text-only too.
    case text
}

/// A dataset file (or set of tar shards), indexed: records are parsed up front for JSON formats and
/// read on demand from tar shards. A malformed line or member stays in the dataset as a failed
/// entry, so a loader counts and reports it when it reaches it.
///
/// ```swift
/// let data = try Dataset(path: "data/train.jsonl")          // format from the extension and keys
/// let shards = try Dataset(path: "shards/{00000..00003}.tar")
/// if case .success(let record) = data.record(at: 0) { print(record.content) }
/// ```
public struct Dataset: Sendable {
    /// The path as given (used in every message).
    public let path: String
    public let format: DatasetFormat

    private enum Storage: Sendable {
        case parsed([Result<DatasetRecord, DataIssue>])
        case webDataset(WebDatasetIndex)
    }
    private let storage: Storage

    /// Opens a dataset.
    ///
    /// - Parameters:
    ///   - path: A `.jsonl` or `.json` file, a `.tar` shard, a brace range of shards
    ///     (`shards/{00000..00003}.tar`) or a directory of shards. Relative to `base` when given.
    ///   - format: The format, or nil to choose it from the extension (`.tar`, a directory or a brace
    ///     range: webdataset; `.json`: LLaVA) and, for JSONL, from the first record's keys.
    ///   - base: The directory a relative `path` is resolved against (a recipe's directory).
    ///   - imageRoot: The directory relative image paths are resolved against; by default the
    ///     dataset file's own directory.
    /// - Throws: ``DataError`` when the file cannot be read, its format cannot be told, or it holds
    ///   no records.
    public init(path: String, format: DatasetFormat? = nil, base: URL? = nil, imageRoot: URL? = nil) throws {
        self.path = path
        let resolved = path.hasPrefix("/") || base == nil ? path : base!.appendingPathComponent(path).path
        let isShards = resolved.hasSuffix(".tar") || resolved.contains("{") || Self.isDirectory(resolved)
        if format == .webdataset || (format == nil && isShards) {
            let files = try WebDatasetIndex.expandShards(resolved)
            let names = files.count == 1 && !resolved.contains("{") && !Self.isDirectory(resolved) ? [path]
                : files.map { ($0 as NSString).lastPathComponent }
            let index = try WebDatasetIndex(shardURLs: files.map { URL(fileURLWithPath: $0) }, names: names)
            guard index.count > 0 else { throw DataError("\(path): the shards hold no samples") }
            self.format = .webdataset
            storage = .webDataset(index)
            return
        }
        let url = URL(fileURLWithPath: resolved)
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw DataError("\(path): cannot read the dataset (\(error.localizedDescription))")
        }
        if format == .text || (format == nil && resolved.hasSuffix(".txt")) {
            let stem = url.deletingPathExtension().lastPathComponent
            let records = JSONChunks.lines(data, file: path).map { chunk -> Result<DatasetRecord, DataIssue> in
                .success(DatasetRecord(id: "\(stem):\(chunk.location.place)", location: chunk.location, images: [],
                                       content: .caption(String(decoding: chunk.bytes, as: UTF8.self))))
            }
            guard !records.isEmpty else { throw DataError("\(path): the dataset holds no text") }
            self.format = .text
            storage = .parsed(records)
            return
        }
        let paths = ImagePaths(root: imageRoot ?? url.deletingLastPathComponent())
        let isJSONList = resolved.hasSuffix(".json") && (format == nil || format == .llava)
        let chunks = try isJSONList ? JSONChunks.arrayElements(data, file: path) : JSONChunks.lines(data, file: path)
        let chosen = try format ?? (resolved.hasSuffix(".json") ? .llava : Self.detect(chunks, file: path))
        let parse: (JSONFields, String, ImagePaths) throws(DataIssue) -> DatasetRecord = switch chosen {
        case .pairs: RecordParsing.pair
        case .questions: RecordParsing.question
        case .llava: RecordParsing.llava
        case .messages: RecordParsing.messages
        case .preference: RecordParsing.preference
        case .webdataset, .text: fatalError("handled above")
        }
        let stem = url.deletingPathExtension().lastPathComponent
        let records = chunks.map { chunk -> Result<DatasetRecord, DataIssue> in
            do throws(DataIssue) {
                let fields = try JSONFields(parsing: chunk.bytes, at: chunk.location)
                return .success(try parse(fields, "\(stem):\(chunk.location.place)", paths))
            } catch {
                return .failure(error)
            }
        }
        guard !records.isEmpty else { throw DataError("\(path): the dataset holds no records") }
        self.format = chosen
        storage = .parsed(records)
    }

    /// The number of entries (records and malformed entries).
    public var count: Int {
        switch storage {
        case .parsed(let records): records.count
        case .webDataset(let index): index.count
        }
    }

    /// Entry `index`: a record, or why it is unusable. Tar members are read here.
    public func record(at index: Int) -> Result<DatasetRecord, DataIssue> {
        switch storage {
        case .parsed(let records): records[index]
        case .webDataset(let shards): shards.record(at: index)
        }
    }

    /// The entries that failed to parse (JSON formats; tar shards are read lazily, so only corrupt
    /// headers show here).
    public var parseIssues: [DataIssue] {
        switch storage {
        case .parsed(let records): records.compactMap { if case .failure(let issue) = $0 { issue } else { nil } }
        case .webDataset(let index): index.shardIssues
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// The JSONL format named by the first parsable record's keys.
    static func detect(_ chunks: [JSONChunks.Chunk], file: String) throws -> DatasetFormat {
        for chunk in chunks {
            guard let fields = try? JSONFields(parsing: chunk.bytes, at: chunk.location) else { continue }
            let keys = fields.keys
            if keys.contains("messages") { return .messages }
            if keys.contains("chosen") && keys.contains("rejected") { return .preference }
            if keys.contains("conversations") { return .llava }
            if keys.contains("question") && keys.contains("answer") { return .questions }
            if keys.contains("text") { return .pairs }
            throw DataError("\(chunk.location): cannot tell the dataset format from the keys \(keys.sorted()) (expected "
                + "\"text\" for pairs, \"question\"/\"answer\", \"messages\", \"conversations\" or \"chosen\"/\"rejected\"; or give the format)")
        }
        throw DataError("\(file): no line is a JSON object, so the format cannot be told")
    }
}
