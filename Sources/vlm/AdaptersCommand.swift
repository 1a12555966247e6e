import ArgumentParser
import Checkpoint
import Foundation
import Models
import Processing
import Yams

/// `vlm adapters …`: build adapter checkpoints from text models.
struct AdaptersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adapters",
        abstract: "Add an image encoder and its fusion (gated cross-attention, or LLaVA's token stream) to a Llama checkpoint.",
        subcommands: [Initialize.self])

    struct Initialize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Turn a Llama 3.1 checkpoint into an mllama checkpoint with fresh adapters (gates at 0: a drop-in), a token-stream model, or LLaVA.",
            discussion: """
                The model folder appears whole or not at all: it is built in a hidden temporary folder \
                beside --out and renamed into place when complete (an interrupted run removes it; one \
                killed outright leaves it for the next run to remove). An existing --out is refused \
                unless --force is given; --out can never be the text model's own folder (or hold it).
                """)

        @Option(help: "The Llama checkpoint directory.")
        var textModel: String

        @Option(help: "An adapter layout (adapters/*.yaml; '-' reads standard input). Its 'architecture' (cross-attention, llava-linear, llava-mlp2x, or llava for LLaVA proper with a CLIP tower) picks the fusion.")
        var adapter: String

        @Option(help: "The directory to create for the new checkpoint.")
        var out: String

        @Option(help: "Seed for the fresh weights.")
        var seed: UInt64 = 0

        @Option(help: "The folder holding the text model's tokenizer.json (default: --text-model).")
        var tokenizer: String?

        @Flag(help: "Replace --out if it already exists.")
        var force = false

        func run() throws {
            let layout: AdapterLayout
            switch try loadModelLayout(path: adapter) {
            case .adapters(let adapters): layout = adapters
            case .llava(let llava): return try build(llava)
            }
            let (output, exists) = try checkedOutput()
            let input = URL(fileURLWithPath: textModel).resolvingSymlinksInPath().standardizedFileURL
            let building = try TemporarySibling.makeFolder(beside: output)
            defer { TemporarySibling.releaseFolder(building) }
            if layout.architecture != .crossAttention {
                do {
                    let config = try AdapterInitialization.initializeTokenStream(textModel: input, layout: layout, output: building, seed: seed)
                    try replace(output, with: building, exists: exists)
                    print("wrote \(out): \(layout.architecture.rawValue) — image encoder \(config.visionConfig.hiddenSize) wide with "
                          + "\(config.visionConfig.numHiddenLayers) + \(config.visionConfig.numGlobalLayers) layers, projector "
                          + "\(config.projectorType.rawValue), each image as \(config.imageTokensPerImage) "
                          + "tokens of the frozen \(config.textConfig.numHiddenLayers)-layer Llama, <|image|> = \(config.imageTokenIndex)")
                } catch {
                    try? FileManager.default.removeItem(at: building)
                    throw error
                }
                return
            }
            let config: MllamaConfig
            do {
                // Read and check the tokenizer before writing weights.
                let supportFiles = try VisionCheckpointFiles(
                    source: tokenizer.map { URL(fileURLWithPath: $0) } ?? input,
                    config: try AdapterInitialization.configuration(textModel: input, layout: layout))
                config = try AdapterInitialization.initialize(textModel: input, layout: layout, output: building, seed: seed)
                try supportFiles.write(to: building)
                try replace(output, with: building, exists: exists)
            } catch {
                try? FileManager.default.removeItem(at: building)
                throw error
            }
            let text = config.textConfig.llama
            print("wrote \(out): \(text.numHiddenLayers) layers (cross-attention at \(config.textConfig.crossAttentionLayers)), "
                  + "image encoder \(config.visionConfig.hiddenSize) wide with \(config.visionConfig.numHiddenLayers) + "
                  + "\(config.visionConfig.numGlobalLayers) layers, <|image|> = \(config.imageTokenIndex)")
        }

        /// LLaVA proper: a fresh CLIP tower and projector on the Llama, written whole or not at all.
        private func build(_ layout: LlavaLayout) throws {
            let (output, exists) = try checkedOutput()
            let building = try TemporarySibling.makeFolder(beside: output)
            defer { TemporarySibling.releaseFolder(building) }
            let config: LlavaConfig
            do {
                config = try AdapterInitialization.initializeLlava(textModel: URL(fileURLWithPath: textModel), layout: layout,
                                                                  output: building, seed: seed)
                try replace(output, with: building, exists: exists)
            } catch {
                try? FileManager.default.removeItem(at: building)
                throw error
            }
            let v = config.visionConfig
            print("wrote \(out): llava — CLIP tower \(v.hiddenSize) wide with \(v.numHiddenLayers) layers (\(v.imageSize) px, "
                  + "patch \(v.patchSize)), projector \(config.projectorType), each image as \(config.imageSeqLength) tokens at "
                  + "<image> = \(config.imageTokenIndex) of the \(config.textConfig.numHiddenLayers)-layer Llama")
        }

        /// The output folder, checked: never the text model's folder or one holding it, and an
        /// existing one only with --force. Its parent is created.
        private func checkedOutput() throws -> (url: URL, exists: Bool) {
            _ = try modelFolder(textModel)
            let input = URL(fileURLWithPath: textModel).resolvingSymlinksInPath().standardizedFileURL
            let output = URL(fileURLWithPath: out).resolvingSymlinksInPath().standardizedFileURL
            func folderPrefix(_ url: URL) -> String { url.path.hasSuffix("/") ? url.path : url.path + "/" }
            guard !folderPrefix(input).hasPrefix(folderPrefix(output)) else {
                throw CommandFailure("--out \(out) is the text model's folder \(textModel)\(input.path == output.path ? "" : " or holds it"): "
                                     + "writing there would destroy the input; choose another folder")
            }
            let exists = FileManager.default.fileExists(atPath: output.path)
            if exists && !force {
                throw CommandFailure("\(out) already exists; pass --force to replace it, or choose another --out")
            }
            try FileManager.default.createDirectory(at: output.deletingLastPathComponent(), withIntermediateDirectories: true)
            return (output, exists)
        }

        /// Renames the finished folder into place; an existing output (with --force) is first moved
        /// aside under a temporary name and removed once the new one is in place.
        private func replace(_ output: URL, with building: URL, exists: Bool) throws {
            var old: URL? = nil
            if exists {
                let aside = URL(fileURLWithPath: building.path + "-old")
                PendingTemporaries.register(aside.path)
                guard rename(output.path, aside.path) == 0 else {
                    throw CommandFailure("\(out): cannot move the existing folder aside (\(String(cString: strerror(errno))))")
                }
                old = aside
            }
            guard rename(building.path, output.path) == 0 else {
                let reason = String(cString: strerror(errno))
                if let old { _ = rename(old.path, output.path) }
                throw CommandFailure("\(out): cannot rename the finished folder into place (\(reason))")
            }
            if let old {
                try? FileManager.default.removeItem(at: old)
                PendingTemporaries.unregister(old.path)
            }
        }
    }
}

/// A layout file of either kind: adapters for a Llama (cross-attention or the token stream), or LLaVA proper.
enum ModelLayout {
    case adapters(AdapterLayout)
    case llava(LlavaLayout)
}

/// Reads a layout file; `architecture: llava` makes it a ``LlavaLayout``, anything else an
/// ``AdapterLayout``. Errors name the file and the field; unknown keys are errors.
func loadModelLayout(path: String) throws -> ModelLayout {
    let (text, source) = try layoutText(path: path)
    let architecture = (try? Yams.load(yaml: text) as? [String: Any])?["architecture"] as? String
    if architecture == LlavaLayout.architectureName {
        return .llava(try decodeLayout(LlavaLayout.self, text: text, source: source, example: "adapters/world-llava-clip.yaml"))
    }
    return .adapters(try decodeLayout(AdapterLayout.self, text: text, source: source))
}

/// Reads an adapter layout, naming the file and the field in errors; keys the layout does not
/// know are errors, not silently ignored.
func loadAdapterLayout(path: String) throws -> AdapterLayout {
    let (text, source) = try layoutText(path: path)
    return try decodeLayout(AdapterLayout.self, text: text, source: source)
}

/// A layout file's text and the name errors give it.
private func layoutText(path: String) throws -> (text: String, source: String) {
    let source = path == "-" ? "standard input" : path
    guard let text = String(data: try readInput(path), encoding: .utf8) else { throw CommandFailure("\(source): not UTF-8 text") }
    return (text, source)
}

private func decodeLayout<Layout: Codable>(_ type: Layout.Type, text: String, source: String,
                                           example: String = "adapters/tiny.yaml") throws -> Layout {
    let layout: Layout
    do { layout = try YAMLDecoder().decode(Layout.self, from: text) } catch let error as DecodingError {
        throw CommandFailure("\(source): not a valid adapter layout: \(describe(error))")
    } catch {
        throw CommandFailure("\(source): not valid YAML: \(error)")
    }
    // Keys that decoding skipped: everything the input has that the decoded layout, written back, lacks.
    let given = try? Yams.load(yaml: text)
    let known = try? Yams.load(yaml: YAMLEncoder().encode(layout))
    let unknown = unknownKeys(given, known: known, at: "")
    guard unknown.isEmpty else {
        throw CommandFailure("\(source): unknown key\(unknown.count == 1 ? "" : "s") \(unknown.map { "'\($0)'" }.joined(separator: ", ")) "
                             + "(misspelled? see \(example) for the fields a layout has)")
    }
    return layout
}

/// The dotted paths of dictionary keys in `given` that `known` lacks.
private func unknownKeys(_ given: Any?, known: Any?, at path: String) -> [String] {
    guard let given = given as? [String: Any] else { return [] }
    let known = known as? [String: Any] ?? [:]
    return given.keys.sorted().flatMap { key -> [String] in
        let keyPath = path.isEmpty ? key : path + "." + key
        guard let value = known[key] else { return [keyPath] }
        return unknownKeys(given[key], known: value, at: keyPath)
    }
}

/// A decoding error as one line: where in the file, and what is wrong.
func describe(_ error: DecodingError) -> String {
    func where_(_ context: DecodingError.Context) -> String {
        let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        return path.isEmpty ? "" : "at '\(path)': "
    }
    switch error {
    case .keyNotFound(let key, let context): return "\(where_(context))missing key '\(key.stringValue)'"
    case .typeMismatch(let type, let context): return "\(where_(context))expected \(type) (\(context.debugDescription))"
    case .valueNotFound(let type, let context): return "\(where_(context))missing \(type) value"
    case .dataCorrupted(let context): return "\(where_(context))\(context.debugDescription)"
    @unknown default: return "\(error)"
    }
}
