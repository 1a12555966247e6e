import ArgumentParser
import Checkpoint
import Layers
import Foundation
import Models
import Testing
import TensorCore
@testable import Tokenization
import _TestSupport
@testable import vlm
#if canImport(Glibc)
import Glibc
#endif

// Helpers shared by the command-line defect tests (issue 16).

/// The message `vlm` would print for the error `arguments` end in (nil when they succeed), and the exit status.
func failure(_ arguments: [String]) -> (message: String, status: Int32)? {
    do { try runVLM(arguments) } catch {
        return (VLM.message(for: error), VLM.exitCode(for: error).rawValue)
    }
    return nil
}

/// A scratch folder removed when the test ends.
final class Scratch {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("vlm-cli-defects-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    var contents: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted() }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// The PID of a process that has exited (for stale temporaries).
func deadPID() throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/true")
    try process.run()
    process.waitUntilExit()
    return process.processIdentifier
}

/// A byte-level tokenizer.json whose 256 tokens are the 256 bytes (ids 0–255), with the Llama 3
/// pre-tokenizer: it fits the tiny test checkpoints' 256-token vocabulary.
func writeByteTokenizer(to url: URL, specials: [String: Int] = [:], skipping reserved: Set<Int> = []) throws {
    var vocab: [String: Int] = [:]
    var next = 0
    for byte in 0..<256 {
        while reserved.contains(next) || specials.values.contains(next) { next += 1 }
        vocab[String(Character(Unicode.Scalar(ByteLevelAlphabet.scalarValues[byte])!))] = next
        next += 1
    }
    let json: [String: Any] = [
        "normalizer": NSNull(), "added_tokens": specials.map { ["id": $0.value, "content": $0.key, "special": true] },
        "pre_tokenizer": ["type": "Sequence", "pretokenizers": [
            ["type": "Split", "pattern": ["Regex": Llama3PreTokenizer.pattern], "behavior": "Isolated", "invert": false],
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false]]],
        "model": ["type": "BPE", "vocab": vocab, "merges": [String](), "ignore_merges": true],
    ]
    try JSONSerialization.data(withJSONObject: json).write(to: url)
}

/// A copy of a fixture checkpoint folder (config, generation config, weights) in `scratch`.
func copyFixture(_ name: String, to destination: URL) throws {
    try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
    for file in ["config.json", "generation_config.json", "model.safetensors"] {
        try FileManager.default.copyItem(at: Fixtures.url(name).appendingPathComponent(file),
                                         to: destination.appendingPathComponent(file))
    }
}

let llamaFixture = Fixtures.url("llama/gqa2_untied_padded")
let mllamaFixture = Fixtures.url("mllama/tiny_single_image_56")
let sharedTokenizer = Fixtures.sharedReference("llama3-tokenizer/tokenizer.model")
let hasSharedTokenizer = Fixtures.hasSharedReference("llama3-tokenizer/tokenizer.model")
let sharedNote = Comment(rawValue: Fixtures.sharedReferenceNote("llama3-tokenizer/tokenizer.model"))

