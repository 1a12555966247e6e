import Checkpoint
import Foundation
import Models
import Testing
import TensorCore
import _TestSupport
@testable import vlm

/// A copy of the LLaVA fixture with a byte-level tokenizer (`<image>` = 299) and a LLaVA-1.5 style
/// preprocessor config at the tower's 28-pixel size.
private func llavaFolder(in scratch: Scratch) throws -> URL {
    let folder = scratch.url.appendingPathComponent("llava")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    for file in ["config.json", "model.safetensors"] {
        try FileManager.default.copyItem(at: Fixtures.url("llava/mlp_layer-2_default").appendingPathComponent(file),
                                         to: folder.appendingPathComponent(file))
    }
    try writeByteTokenizer(to: folder.appendingPathComponent("tokenizer.json"), specials: ["<image>": 299])
    let processor = #"{"image_processor_type": "LlavaImageProcessor", "do_pad": true, "size": {"shortest_edge": 28}, "crop_size": {"height": 28, "width": 28}}"#
    try Data(processor.utf8).write(to: folder.appendingPathComponent("preprocessor_config.json"))
    return folder
}

@Suite("vlm forward, preprocess and generate with llava checkpoints")
struct LlavaCommandTests {
    @Test("vlm forward gives transformers' logits for the fixture's inputs")
    func forwardMatchesFixture() throws {
        let scratch = try Scratch()
        let fixture = Fixtures.url("llava/mlp_layer-2_default")
        let out = scratch.path("logits.safetensors")
        try runVLM(["forward", "--model", fixture.path, "--inputs", fixture.appendingPathComponent("inputs.safetensors").path, "--out", out])
        let logits = try SafetensorsFile(path: out).tensor("logits")
        let expected = try SafetensorsFile(path: fixture.appendingPathComponent("logits.safetensors").path).tensor("logits")
        let mask = try SafetensorsFile(path: fixture.appendingPathComponent("inputs.safetensors").path).tensor("attention_mask").integers()
        let v = logits.shape[2], values = logits.doubles(), reference = expected.doubles()
        let real = mask.indices.filter { mask[$0] != 0 }
        let (relative, maxAbs) = errors(real.flatMap { values[($0 * v)..<(($0 + 1) * v)] }, real.flatMap { reference[($0 * v)..<(($0 + 1) * v)] })
        #expect(relative <= 1e-5 && maxAbs <= 1e-4, "relative L2 \(relative), max abs \(maxAbs)")
    }

    @Test("pixel_values that do not fit the model or the image tokens are messages naming the tensor")
    func badPixelValues() throws {
        let scratch = try Scratch()
        let fixture = Fixtures.url("llava/mlp_layer-2_default")
        let file = try SafetensorsFile(path: fixture.appendingPathComponent("inputs.safetensors").path)
        let ids = try file.tensor("input_ids"), pixels = try file.tensor("pixel_values")
        let cases: [(String, Tensor?)] = [
            ("3 images need 16 each = 48", nil),
            ("pixel_values must be [I, C, H, W] = [I, 3, 28, 28]", Tensor(zeros: [3, 3, 14, 14])),
            ("2 images need 16 each = 32", pixels.slice(axis: 0, 0..<2).contiguous()),
            ("pixel_values must be float32", pixels.converted(to: .float64)),
        ]
        for (expected, replacement) in cases {
            let path = scratch.path("inputs-\(UUID().uuidString).safetensors")
            var tensors: [(String, Tensor)] = [("input_ids", ids)]
            if let replacement { tensors.append(("pixel_values", replacement)) }
            try writeSafetensors(tensors: tensors, to: URL(fileURLWithPath: path))
            let message = failure(["forward", "--model", fixture.path, "--inputs", path, "--out", scratch.path("out.safetensors")])?.message
            let wanted = replacement == nil ? "input_ids holds 48 image tokens" : expected
            #expect(message?.contains(wanted) == true, "expected '\(wanted)': \(message ?? "no error")")
        }
    }

    @Test("vlm preprocess writes LLaVA inputs that vlm forward reads; vlm generate --image runs")
    func preprocessForwardGenerate() throws {
        let scratch = try Scratch()
        let folder = try llavaFolder(in: scratch)
        let photo = Fixtures.url("mllama/processor/coffee_crop_120x50.png").path
        let pixelsOnly = scratch.path("pixels.safetensors")
        try runVLM(["preprocess", "--model", folder.path, "--image", photo, "--image", photo, "--out", pixelsOnly])
        #expect(try SafetensorsFile(path: pixelsOnly).tensor("pixel_values").shape == [2, 3, 28, 28])

        let inputs = scratch.path("inputs.safetensors")
        try runVLM(["preprocess", "--model", folder.path, "--image", photo, "--prompt", "Describe <image> briefly.", "--out", inputs])
        let file = try SafetensorsFile(path: inputs)
        let ids = try file.tensor("input_ids").integers()
        #expect(ids.count(where: { $0 == 299 }) == 16)   // (28 / 7)² patches, the class token dropped
        #expect(ids.firstIndex(of: 299) == "Describe ".utf8.count)
        let logits = scratch.path("logits.safetensors")
        try runVLM(["forward", "--model", folder.path, "--inputs", inputs, "--out", logits])
        #expect(try SafetensorsFile(path: logits).tensor("logits").shape == [1, ids.count, 300])

        try runVLM(["generate", "--model", folder.path, "--image", photo, "--prompt", "hi", "--max-tokens", "2"])
        let chat = failure(["generate", "--model", folder.path, "--image", photo, "--prompt", "hi", "--chat"])
        #expect(chat?.message.contains("--chat is not supported for llava") == true, "\(String(describing: chat))")
        let noImage = failure(["generate", "--model", folder.path, "--prompt", "<image> hi"])
        #expect(noImage?.message.contains("no --image") == true, "\(String(describing: noImage))")
    }
}
