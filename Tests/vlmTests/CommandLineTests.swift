import Checkpoint
import Foundation
import Models
import Testing
import TensorCore
import Tokenization
import _TestSupport
@testable import vlm

/// Parses `arguments` as the `vlm` command line and runs the chosen subcommand, as the executable would.
private func runCommand(_ arguments: [String]) throws {
    var command = try VLM.parseAsRoot(arguments)
    try command.run()
}

/// A fresh scratch directory for one test.
private func scratchDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("vlm-cli-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The text of the error `body` throws (nil when it does not throw).
private func errorText(_ body: () throws -> Void) -> String? {
    do { try body() } catch { return "\(error)" }
    return nil
}

@Suite("The vlm command line")
struct CommandLineTests {
    let fixture = Fixtures.url("llama/gqa2_untied_padded")

    @Test("vlm forward writes the logits the library computes, and transformers' at real positions")
    func forwardWritesLogits() throws {
        let scratch = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let out = scratch.appendingPathComponent("logits.safetensors")
        let inputs = fixture.appendingPathComponent("inputs.safetensors")
        try runCommand(["forward", "--model", fixture.path, "--inputs", inputs.path, "--out", out.path])

        let written = try SafetensorsFile(path: out.path).tensor("logits")
        let file = try SafetensorsFile(path: inputs.path)
        let ids = try file.tensor("input_ids"), mask = try file.tensor("attention_mask")
        let model = try LlamaForCausalLM.load(directory: fixture)
        let direct = withNoGrad { model(ids, attentionMask: mask) }
        #expect(written.shape == direct.shape)
        #expect(written.doubles() == direct.doubles(), "the command must write exactly what the library computes")

        let expected = try SafetensorsFile(path: fixture.appendingPathComponent("logits.safetensors").path).tensor("logits")
        let v = expected.shape[2], values = written.doubles(), reference = expected.doubles()
        let real = mask.integers().enumerated().filter { $0.element != 0 }.map(\.offset)
        let ours = real.flatMap { values[($0 * v)..<(($0 + 1) * v)] }, theirs = real.flatMap { reference[($0 * v)..<(($0 + 1) * v)] }
        #expect(errors(ours, theirs).maxAbs <= 1e-4)
    }

    @Test("vlm forward names the inputs file and the tensor when input_ids is missing or the mask is mis-shaped")
    func forwardReportsBadInputs() throws {
        let scratch = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let out = scratch.appendingPathComponent("logits.safetensors")

        let noIds = scratch.appendingPathComponent("no-ids.safetensors")
        try writeSafetensors(tensors: ["attention_mask": Tensor(indices: [1, 1], shape: [1, 2])], to: noIds)
        let missing = errorText { try runCommand(["forward", "--model", fixture.path, "--inputs", noIds.path, "--out", out.path]) }
        #expect(missing?.contains(noIds.path) == true && missing?.contains("input_ids") == true, "\(missing ?? "no error")")

        let badMask = scratch.appendingPathComponent("bad-mask.safetensors")
        try writeSafetensors(tensors: ["input_ids": Tensor(indices: [1, 2, 3], shape: [1, 3]),
                                       "attention_mask": Tensor(indices: [1, 1], shape: [1, 2])], to: badMask)
        let misShaped = errorText { try runCommand(["forward", "--model", fixture.path, "--inputs", badMask.path, "--out", out.path]) }
        #expect(misShaped?.contains(badMask.path) == true && misShaped?.contains("attention_mask") == true, "\(misShaped ?? "no error")")
        #expect(!FileManager.default.fileExists(atPath: out.path), "a failed run must not leave an output behind")
    }

    @Test("vlm forward names a truncated checkpoint file")
    func forwardReportsTruncatedCheckpoint() throws {
        let scratch = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let model = scratch.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        for name in ["config.json", "generation_config.json"] {
            try FileManager.default.copyItem(at: fixture.appendingPathComponent(name), to: model.appendingPathComponent(name))
        }
        let weights = try Data(contentsOf: fixture.appendingPathComponent("model.safetensors"))
        let truncated = model.appendingPathComponent("model.safetensors")
        try weights.prefix(weights.count / 2).write(to: truncated)
        let message = errorText {
            try runCommand(["forward", "--model", model.path, "--inputs", fixture.appendingPathComponent("inputs.safetensors").path,
                            "--out", scratch.appendingPathComponent("out.safetensors").path])
        }
        #expect(message?.contains("model.safetensors") == true, "\(message ?? "no error")")
    }

    @Test("vlm tokenize writes the tokenizer's ids for each string, special tokens included", .enabled(if: hasSharedTokenizer, sharedNote))
    func tokenizeWritesIds() throws {
        let scratch = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let texts = ["Hello, world!", "  spaces\tand\nlines  ", "<|begin_of_text|>ünïcödé 🦙 1234567", ""]
        let input = scratch.appendingPathComponent("texts.json"), out = scratch.appendingPathComponent("ids.json")
        try JSONEncoder().encode(texts).write(to: input)
        let tokenizerFile = Fixtures.sharedReference("llama3-tokenizer/tokenizer.model")
        try runCommand(["tokenize", "--tokenizer", tokenizerFile.path, "--input", input.path, "--out", out.path])

        let written = try JSONDecoder().decode([[Int]].self, from: Data(contentsOf: out))
        let tokenizer = try Tokenizer(contentsOf: tokenizerFile, extraSpecialTokens: [:])
        #expect(written == tokenizer.encode(texts, allowSpecial: true))
        #expect(written[2].first == 128000, "special-token text becomes its id")
    }
}
