import Foundation
import TensorCore

/// One name → tensor lookup over a whole checkpoint: a single safetensors file, a sharded
/// checkpoint's `model.safetensors.index.json`, or a folder holding either.
///
/// How a folder is read (the first that applies):
/// 1. `model.safetensors.index.json`, else the only `*.safetensors.index.json` there;
/// 2. otherwise every `*.safetensors` and `*.safetensors.zst` file, in name order, each tensor name
///    appearing in exactly one of them.
///
/// Shards are memory-mapped when the checkpoint opens (cheap: only headers are read) and every
/// tensor the index lists is checked to exist in its shard, so a broken checkpoint fails at once.
public final class SafetensorsCheckpoint: @unchecked Sendable {
    /// The path that was opened.
    public let path: String
    /// The index file, when the checkpoint is sharded through one.
    public let indexPath: String?
    /// All tensor names, sorted.
    public let names: [String]
    /// The shard files, in the order they were opened.
    public let shards: [SafetensorsFile]
    private let shardOfName: [String: Int]

    /// Opens a `.safetensors`/`.safetensors.zst` file, an index JSON file, or a folder.
    ///
    /// - Throws: ``CheckpointError`` naming the file, shard or tensor that is missing or invalid.
    public init(path: String) throws {
        self.path = path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw CheckpointError(file: path, reason: "no such file or folder")
        }
        var files: [String]
        var index: [(name: String, shard: String)]? = nil
        var indexFile: String? = nil
        if isFolder.boolValue {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            let indexes = entries.filter { $0.hasSuffix(".safetensors.index.json") }.sorted()
            if entries.contains("model.safetensors.index.json") {
                indexFile = path + "/model.safetensors.index.json"
            } else if indexes.count == 1 {
                indexFile = path + "/" + indexes[0]
            } else if indexes.count > 1 {
                throw CheckpointError(file: path, reason: "several index files (\(indexes.joined(separator: ", "))) and none is model.safetensors.index.json")
            }
            files = entries.filter { $0.hasSuffix(".safetensors") || $0.hasSuffix(".safetensors.zst") }.sorted()
                .map { path + "/" + $0 }
            if indexFile == nil && files.isEmpty {
                throw CheckpointError(file: path, reason: "folder holds no .safetensors, .safetensors.zst or index file")
            }
        } else {
            files = [path]
            if path.hasSuffix(".json") { indexFile = path }
        }
        if let indexFile {
            index = try Self.readIndex(indexFile)
            let folder = (indexFile as NSString).deletingLastPathComponent
            var shardNames: [String] = []
            for entry in index! where !shardNames.contains(entry.shard) { shardNames.append(entry.shard) }
            files = shardNames.map { folder.isEmpty ? $0 : folder + "/" + $0 }
            for (shardName, file) in zip(shardNames, files) where !FileManager.default.fileExists(atPath: file) {
                let example = index!.first { $0.shard == shardName }!.name
                throw CheckpointError(file: indexFile, reason: "shard '\(shardName)' (holding '\(example)') is missing")
            }
        }
        self.indexPath = indexFile
        self.shards = try files.map { try SafetensorsFile(path: $0) }

        var shardOfName: [String: Int] = [:]
        if let index, let indexFile {
            let shardNumber = Dictionary(uniqueKeysWithValues: shards.enumerated().map { ((($1.path as NSString).lastPathComponent), $0) })
            for (name, shard) in index {
                let number = shardNumber[(shard as NSString).lastPathComponent]!
                guard shards[number].contains(name) else {
                    throw CheckpointError(file: indexFile, reason: "tensor '\(name)' is listed in shard '\(shard)' but that shard does not hold it")
                }
                shardOfName[name] = number
            }
        } else {
            for (number, shard) in shards.enumerated() {
                for name in shard.names {
                    if let other = shardOfName[name] {
                        throw CheckpointError(file: path, reason: "tensor '\(name)' appears in both \(shards[other].path) and \(shard.path)")
                    }
                    shardOfName[name] = number
                }
            }
        }
        self.shardOfName = shardOfName
        self.names = shardOfName.keys.sorted()
    }

    /// Opens the checkpoint at `url` (see ``init(path:)``).
    public convenience init(url: URL) throws { try self.init(path: url.path) }

    /// Reads an index's `weight_map` as (tensor, shard file) pairs.
    private static func readIndex(_ file: String) throws -> [(name: String, shard: String)] {
        let mapped: MappedFile
        do { mapped = try MappedFile(path: file) } catch let error as MappedFile.OpenError {
            throw CheckpointError(file: file, reason: error.reason)
        }
        let json: _JSONValue
        do { json = try _JSONParser.parse(mapped.bytes) } catch let error as _JSONSyntaxError {
            throw CheckpointError(file: file, reason: "not valid JSON (\(error.message) at byte \(error.offset))")
        }
        guard case .object(let top) = json, let map = top.first(where: { $0.key == "weight_map" })?.value else {
            throw CheckpointError(file: file, reason: "index has no 'weight_map' object")
        }
        guard case .object(let entries) = map else { throw CheckpointError(file: file, reason: "'weight_map' is \(map.kind), not an object") }
        var seen = Set<String>()
        return try entries.map { name, value in
            guard seen.insert(name).inserted else { throw CheckpointError(file: file, reason: "weight_map lists '\(name)' twice") }
            guard let shard = value.string else { throw CheckpointError(file: file, reason: "weight_map entry '\(name)' is \(value.kind), not a file name") }
            guard !shard.isEmpty, !shard.hasPrefix("/"), !shard.split(separator: "/").contains("..") else {
                throw CheckpointError(file: file, reason: "weight_map entry '\(name)' names shard '\(shard)' outside the checkpoint folder")
            }
            return (name, shard)
        }
    }

    private func shard(of name: String) throws -> SafetensorsFile {
        guard let number = shardOfName[name] else {
            throw CheckpointError(file: indexPath ?? path, reason: "no tensor named '\(name)'")
        }
        return shards[number]
    }

    /// Whether the checkpoint holds a tensor called `name`.
    public func contains(_ name: String) -> Bool { shardOfName[name] != nil }

    /// The header entry of `name` and the shard file holding it.
    public func info(_ name: String) throws -> (info: TensorInfo, file: String) {
        let shard = try shard(of: name)
        return (try shard.info(name), shard.path)
    }

    /// A zero-copy view of tensor `name` (see ``SafetensorsFile/tensor(_:)``).
    ///
    /// - Throws: ``CheckpointError`` naming the tensor when it is absent or unsupported.
    public func tensor(_ name: String) throws -> Tensor { try shard(of: name).tensor(name) }
}

/// Writes `tensors` as a checkpoint in `folder`, split into shards of at most `maxShardBytes` of
/// tensor data each, the way `transformers`' `save_pretrained(max_shard_size=...)` does.
///
/// When everything fits one shard the result is a single `model.safetensors`; otherwise it is
/// `model-00001-of-0000N.safetensors` … plus `model.safetensors.index.json` with
/// `{"metadata": {"total_size": …}, "weight_map": {name: shard}}`. Tensors are packed greedily in
/// the given order; a tensor larger than the limit gets a shard of its own. Every file is written
/// atomically, the index last.
///
/// - Returns: the files written, index last.
@discardableResult
public func writeShardedSafetensors(tensors: [(String, Tensor)], metadata: [String: String] = ["format": "pt"],
                                    to folder: URL, maxShardBytes: Int) throws -> [URL] {
    ensure(maxShardBytes > 0, "maxShardBytes must be positive")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    var groups: [[(String, Tensor)]] = [[]]
    var groupBytes = 0
    for (name, tensor) in tensors {
        let size = tensor.elementCount * tensor.dtype.byteSize
        if !groups[groups.count - 1].isEmpty && groupBytes + size > maxShardBytes {
            groups.append([])
            groupBytes = 0
        }
        groups[groups.count - 1].append((name, tensor))
        groupBytes += size
    }
    if groups.count == 1 {
        let url = folder.appendingPathComponent("model.safetensors")
        try writeSafetensors(tensors: groups[0], metadata: metadata, to: url)
        return [url]
    }
    var written: [URL] = []
    var weightMap: [String: String] = [:]
    var total = 0
    for (number, group) in groups.enumerated() {
        let name = String(format: "model-%05d-of-%05d.safetensors", number + 1, groups.count)
        let url = folder.appendingPathComponent(name)
        try writeSafetensors(tensors: group, metadata: metadata, to: url)
        for (tensorName, tensor) in group {
            weightMap[tensorName] = name
            total += tensor.elementCount * tensor.dtype.byteSize
        }
        written.append(url)
    }
    let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
    let data = try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
    let indexURL = folder.appendingPathComponent("model.safetensors.index.json")
    try AtomicFile.write(data, to: indexURL)
    return written + [indexURL]
}
