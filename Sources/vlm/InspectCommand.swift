import ArgumentParser
import Checkpoint
import Foundation
import Models

/// `vlm inspect PATH`: what a checkpoint holds, tensor by tensor and module by module, and the
/// configuration found beside it.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "List a checkpoint's tensors, their sizes per module, and its config.",
        discussion: """
            PATH may be a .safetensors or .safetensors.zst file, a model.safetensors.index.json, or a \
            checkpoint folder, whose model weights are read as the loaders find them \
            (model.safetensors.index.json, model.safetensors or model.safetensors.zst; other safetensors \
            files beside them, such as inputs or logits, are not part of the model). Module totals group names by their first dotted component, and by the \
            second one too under 'language_model' and 'model'.
            """)

    @Argument(help: "A .safetensors / .safetensors.zst file, an index JSON file, or a checkpoint folder (its model weights: the index, or model.safetensors).")
    var path: String

    @Flag(name: .long, help: "Print only the module totals and the config, not every tensor.")
    var summary = false

    func run() throws {
        let checkpoint = try SafetensorsCheckpoint(path: try weightsPath())
        var rows: [(name: String, dtype: String, shape: String, bytes: Int, elements: Int)] = []
        for name in checkpoint.names {
            let info = try checkpoint.info(name).info
            rows.append((name, info.dtype.rawValue, "[" + info.shape.map(String.init).joined(separator: ", ") + "]",
                         info.byteCount, info.elementCount))
        }
        let shardNote = checkpoint.shards.count > 1 ? " in \(checkpoint.shards.count) shards" : ""
        print("\(path): \(rows.count) tensors\(shardNote)")
        if !summary {
            let nameWidth = min(rows.map(\.name.count).max() ?? 0, 80)
            let shapeWidth = rows.map(\.shape.count).max() ?? 0
            for row in rows {
                print(row.name.padding(toLength: max(nameWidth, row.name.count), withPad: " ", startingAt: 0), " ",
                      row.dtype.padding(toLength: 8, withPad: " ", startingAt: 0),
                      row.shape.padding(toLength: shapeWidth, withPad: " ", startingAt: 0), " ",
                      formatBytes(row.bytes))
            }
        }

        print("\nModules:")
        var totals: [String: (bytes: Int, elements: Int, count: Int)] = [:]
        for row in rows {
            for module in moduleKeys(row.name) {
                let old = totals[module, default: (0, 0, 0)]
                totals[module] = (old.bytes + row.bytes, old.elements + row.elements, old.count + 1)
            }
        }
        for module in totals.keys.sorted() {
            let total = totals[module]!
            let indent = module.contains(".") ? "    " : "  "
            print("\(indent)\(module.padding(toLength: 40, withPad: " ", startingAt: 0)) \(String(total.count).leftPad(5)) tensors  "
                  + "\(formatCount(total.elements).leftPad(8)) params  \(formatBytes(total.bytes).leftPad(10))")
        }
        let allBytes = rows.reduce(0) { $0 + $1.bytes }, allElements = rows.reduce(0) { $0 + $1.elements }
        print("  \("total".padding(toLength: 40, withPad: " ", startingAt: 0)) \(String(rows.count).leftPad(5)) tensors  "
              + "\(formatCount(allElements).leftPad(8)) params  \(formatBytes(allBytes).leftPad(10))")

        printConfig(beside: path)
    }

    /// What to read: a file as given; for a folder, the model's weights as the loaders find them
    /// (the index, or `model.safetensors`), not every safetensors file that happens to be there
    /// (inputs, logits…). A folder without them falls back to its safetensors files.
    private func weightsPath() throws -> String {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw CommandFailure("\(path): no such file or folder")
        }
        guard isFolder.boolValue else { return path }
        return (try? LlamaForCausalLM.weightsPath(in: URL(fileURLWithPath: path))) ?? path
    }

    /// The module totals a tensor counts towards: its first dotted component, and for the
    /// `language_model` / `model` wrappers also the first two.
    private func moduleKeys(_ name: String) -> [String] {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count > 1 else { return [name] }
        var keys = [parts[0]]
        if ["language_model", "model"].contains(parts[0]), parts.count > 2 { keys.append(parts[0] + "." + parts[1]) }
        return keys
    }

    private func printConfig(beside path: String) {
        var isFolder: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder)
        let folder = isFolder.boolValue ? URL(fileURLWithPath: path) : URL(fileURLWithPath: path).deletingLastPathComponent()
        let configURL = folder.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            print("\nNo config.json beside the checkpoint.")
            return
        }
        print("\nConfig (\(configURL.path)):")
        do {
            switch try ModelConfig.load(from: configURL) {
            case .llama(let c):
                print("  model_type llama")
                print("  " + describe(text: c))
            case .mllama(let c):
                print("  model_type mllama, image_token_index \(c.imageTokenIndex)")
                print("  text:   " + describe(text: c.textConfig.llama) + ", cross-attention layers \(c.textConfig.crossAttentionLayers)")
                let v = c.visionConfig
                print("  vision: hidden \(v.hiddenSize), layers \(v.numHiddenLayers) + \(v.numGlobalLayers) global, heads \(v.attentionHeads), "
                      + "image \(v.imageSize), patch \(v.patchSize), tiles \(v.maxNumTiles), output \(v.visionOutputDim)")
            case .llava(let c):
                print("  model_type llava, image_token_index \(c.imageTokenIndex), feature layer \(c.visionFeatureLayers)")
                print("  text:   " + describe(text: c.textConfig))
                let v = c.visionConfig
                print("  vision: hidden \(v.hiddenSize), layers \(v.numHiddenLayers), heads \(v.numAttentionHeads), "
                      + "image \(v.imageSize), patch \(v.patchSize)")
            case .tokenStream(let c):
                print("  model_type \(TokenStreamConfig.modelType), image_token_index \(c.imageTokenIndex), projector \(c.projectorType.rawValue), "
                      + "\(c.imageTokensPerImage) text positions per image")
                print("  text:   " + describe(text: c.textConfig))
                let v = c.visionConfig
                print("  vision: hidden \(v.hiddenSize), layers \(v.numHiddenLayers) + \(v.numGlobalLayers) global, heads \(v.attentionHeads), "
                      + "image \(v.imageSize), patch \(v.patchSize), tiles \(v.maxNumTiles), output \(v.visionOutputDim)")
            }
        } catch {
            print("  cannot read: \(error)")
        }
    }

    private func describe(text c: LlamaConfig) -> String {
        "vocab \(c.vocabSize), hidden \(c.hiddenSize), layers \(c.numHiddenLayers), heads \(c.numAttentionHeads)/\(c.numKeyValueHeads) kv, "
            + "head_dim \(c.headDim), mlp \(c.intermediateSize), rope \(c.rope.ropeType) θ=\(c.rope.ropeTheta)"
    }
}

/// `1.5 GB`-style sizes (powers of 1024).
func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(bytes), unit = 0
    while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f ", value) + units[unit]
}

/// `7.5M`-style counts.
func formatCount(_ count: Int) -> String {
    switch count {
    case 1_000_000_000...: String(format: "%.2fB", Double(count) / 1e9)
    case 1_000_000...: String(format: "%.1fM", Double(count) / 1e6)
    case 1_000...: String(format: "%.1fK", Double(count) / 1e3)
    default: String(count)
    }
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
