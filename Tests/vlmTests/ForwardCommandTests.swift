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

@Suite("vlm forward: every input tensor is used or refused")
struct ForwardInputTests {
    fileprivate func inputs(_ change: (inout [String: Tensor]) -> Void, in scratch: Scratch, fixture: URL = mllamaFixture) throws -> String {
        let file = try SafetensorsFile(path: fixture.appendingPathComponent("inputs.safetensors").path)
        var tensors: [String: Tensor] = [:]
        for name in file.names { tensors[name] = try file.tensor(name).copy() }
        change(&tensors)
        let path = scratch.path("inputs-\(UUID().uuidString).safetensors")
        try writeSafetensors(tensors: tensors, to: URL(fileURLWithPath: path))
        return path
    }

    fileprivate func forward(_ inputs: String, scratch: Scratch, model: URL = mllamaFixture) -> String? {
        failure(["forward", "--model", model.path, "--inputs", inputs, "--out", scratch.path("out.safetensors")])?.message
    }

    @Test("An unknown tensor (a misspelled name) is an error naming it")
    func unknownTensor() throws {
        let scratch = try Scratch()
        let misspelled = try inputs({ $0["cross_attn_mask"] = $0.removeValue(forKey: "cross_attention_mask") }, in: scratch)
        #expect(forward(misspelled, scratch: scratch)?.contains("'cross_attn_mask'") == true)
        let extra = try inputs({ $0["labels"] = $0["input_ids"] }, in: scratch, fixture: llamaFixture)
        #expect(forward(extra, scratch: scratch, model: llamaFixture)?.contains("'labels'") == true)
    }

    @Test("Wrong pixel dtypes, tile sizes, aspect-ratio ids and mask shapes are messages naming the tensor")
    func badImageInputs() throws {
        let scratch = try Scratch()
        let cases: [(String, (inout [String: Tensor]) -> Void)] = [
            ("pixel_values must be float32", { $0["pixel_values"] = $0["pixel_values"]!.converted(to: .float64) }),
            ("pixel_values must be float32", { $0["pixel_values"] = $0["pixel_values"]!.converted(to: .float16) }),
            ("pixel_values must be [B, N, tiles, C, H, W]", { $0["pixel_values"] = Tensor(zeros: [1, 1, 4, 3, 14, 14]) }),
            ("aspect_ratio_ids holds 9", { $0["aspect_ratio_ids"] = Tensor(indices: [9], shape: [1, 1]) }),
            ("aspect_ratio_ids holds -1", { $0["aspect_ratio_ids"] = Tensor(indices: [-1], shape: [1, 1]) }),
            ("cross_attention_mask must be [B, T, N, tiles] = [1, 10, 1, 4]", { $0["cross_attention_mask"] = Tensor(indices: Array(repeating: 1, count: 8), shape: [1, 2, 1, 4]) }),
            ("aspect_ratio_mask must be", { $0["aspect_ratio_mask"] = Tensor(indices: [1, 1], shape: [1, 1, 2]) }),
            ("given without pixel_values", { $0["pixel_values"] = nil }),
        ]
        for (expected, change) in cases {
            let message = forward(try inputs(change, in: scratch), scratch: scratch)
            #expect(message?.contains(expected) == true, "expected '\(expected)': \(message ?? "no error")")
        }
        #expect(!scratch.contents.contains("out.safetensors"))
    }
}
