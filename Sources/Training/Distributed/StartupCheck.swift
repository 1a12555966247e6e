import Collectives
import Foundation
import Layers

/// Before a data-parallel stage takes its first step, every rank describes what it is about to
/// train — the stage's settings digest, the model's parameter names, shapes and dtypes and a hash
/// of all its weights (trainable and frozen), and each dataset file (readable, its size) — and the
/// ranks compare. A rank that could not build the stage (an unreadable file, a missing model) or
/// that differs from rank 0 is named with the field, and every rank stops before any step.
enum StartupCheck {
    /// This rank's description of the stage, field by field; a field whose value starts with
    /// `failed: ` is a failure on this rank whatever the others say.
    static func fingerprint(stage: StageSettings, recipe: Recipe, environment: Result<StageEnvironment, Error>) -> [String: String] {
        var fields = ["settings": stage.digest]
        for (field, specs) in [("datasets", stage.datasets), ("eval_datasets", stage.evalDatasets)] {
            for (index, spec) in specs.enumerated() {
                fields["\(stage.name).\(field)[\(index)] \(spec.path)"] = describeFile(recipe.url(of: spec))
            }
        }
        switch environment {
        case .failure(let error):
            fields["stage setup"] = "failed: \(error)"
        case .success(let environment):
            var layout = ContentHash(), weights = ContentHash()
            for (name, slot) in environment.model.namedParameters() {
                guard let tensor = slot.tensor else { continue }
                layout.add("\(name) \(tensor.dtype) \(tensor.shape)")
                weights.add(name)
                weights.add(tensor)
            }
            fields["model parameter names, shapes and dtypes"] = layout.hex
            fields["model weights"] = weights.hex
        }
        return fields
    }

    /// A dataset path as the check sees it: `N bytes` for a file, `N files` for a folder, the
    /// path itself for a brace range (its shards are checked when the stage opens them).
    static func describeFile(_ url: URL) -> String {
        let path = url.path
        if path.contains("{") { return "range" }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return "failed: \(path) does not exist" }
        if isFolder.boolValue {
            guard let entries = try? FileManager.default.contentsOfDirectory(atPath: path) else { return "failed: \(path) cannot be listed" }
            return "\(entries.count) files"
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { return "failed: \(path) cannot be read" }
        defer { try? handle.close() }
        guard (try? handle.read(upToCount: 1)) != nil else { return "failed: \(path) cannot be read" }
        let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int ?? -1
        return "\(size) bytes"
    }

    /// Compares every rank's fingerprint with rank 0's.
    ///
    /// - Throws: ``DataParallelMismatch`` on every rank, naming each rank and field that failed or differs.
    static func verify(stage: StageSettings, fingerprint: [String: String], group: any ProcessGroup) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let gathered = try group.allGather(Array(try encoder.encode(fingerprint)))
        let all = try gathered.map { try JSONDecoder().decode([String: String].self, from: Data($0)) }
        var problems: [String] = []
        for (rank, fields) in all.enumerated() {
            for key in Set(fields.keys).union(all[0].keys).sorted() {
                let value = fields[key] ?? "missing", reference = all[0][key] ?? "missing"
                if value.hasPrefix("failed: ") {
                    problems.append("rank \(rank): \(key): \(value.dropFirst("failed: ".count))")
                } else if rank > 0 && value != reference && !reference.hasPrefix("failed: ")
                            && !(value == "missing" && fields["stage setup"] != nil) {
                    problems.append("rank \(rank): \(key) differs from rank 0's (\(value) vs \(reference))")
                }
            }
        }
        guard problems.isEmpty else {
            throw DataParallelMismatch("the \(group.size) ranks cannot start stage \(stage.name) together:\n  "
                + problems.joined(separator: "\n  ") + "\nNo step was taken.")
        }
    }
}
