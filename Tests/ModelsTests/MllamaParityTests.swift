import Checkpoint
import Foundation
import Layers
import Models
import Testing
import TensorCore
import _TestSupport

/// A case of Tests/Fixtures/mllama: a tiny random Mllama saved by transformers 4.45.2, with inputs
/// as the processor lays them out and reference outputs (gates set to nonzero values so every
/// branch matters).
struct MllamaFixture {
    let directory: URL
    let inputs: [String: Tensor]

    init(_ name: String) throws {
        directory = Fixtures.url("mllama/\(name)")
        inputs = try SafetensorsFile(path: directory.appendingPathComponent("inputs.safetensors").path).tensors()
    }

    func tensor(_ file: String, _ name: String) throws -> Tensor {
        try SafetensorsFile(path: directory.appendingPathComponent("\(file).safetensors").path).tensor(name)
    }

    func logits(of model: MllamaForConditionalGeneration) -> Tensor {
        withNoGrad {
            model(inputIds: inputs["input_ids"]!, attentionMask: inputs["attention_mask"]!,
                  pixelValues: inputs["pixel_values"]!, aspectRatioIds: inputs["aspect_ratio_ids"]!,
                  aspectRatioMask: inputs["aspect_ratio_mask"]!, crossAttentionMask: inputs["cross_attention_mask"]!)
        }
    }

    /// The `[V]` rows of a `[B, T, V]` tensor at the positions `keep(row, t)` selects.
    func rows(_ logits: Tensor, where keep: (Int, Int) -> Bool) -> [Double] {
        let (b, t, v) = (logits.shape[0], logits.shape[1], logits.shape[2])
        let values = logits.doubles()
        var out: [Double] = []
        for row in 0..<b { for position in 0..<t where keep(row, position) {
            out += values[((row * t + position) * v)..<((row * t + position + 1) * v)]
        } }
        return out
    }

    /// Whether a position is a real token (attention mask 1).
    func isReal(_ row: Int, _ position: Int) -> Bool {
        inputs["attention_mask"]!.integers()[row * inputs["attention_mask"]!.shape[1] + position] != 0
    }

    /// Whether a real position's cross-attention mask row sees no tile at all.
    func seesNoImage(_ row: Int, _ position: Int) -> Bool {
        let mask = inputs["cross_attention_mask"]!
        let (t, n, x) = (mask.shape[1], mask.shape[2], mask.shape[3])
        let flags = mask.integers()
        let start = (row * t + position) * n * x
        return isReal(row, position) && flags[start..<(start + n * x)].allSatisfy { $0 == 0 }
    }
}

@Suite("Mllama parity with transformers 4.45.2 and Meta's masking")
struct MllamaParityTests {
    static let cases = ["tiny_single_image_56", "tiny_multi_image"]

    @Test("vision features and projected image tokens match the reference", arguments: cases)
    func visionFeatures(name: String) throws {
        let fixture = try MllamaFixture(name)
        let model = try MllamaForConditionalGeneration.load(directory: fixture.directory)
        let features = withNoGrad {
            model.visionModel(pixelValues: fixture.inputs["pixel_values"]!, aspectRatioIds: fixture.inputs["aspect_ratio_ids"]!,
                              aspectRatioMask: fixture.inputs["aspect_ratio_mask"]!)
        }
        let expected = try fixture.tensor("intermediates", "vision_features")
        #expect(features.shape == expected.shape)
        let vision = errors(features.doubles(), expected.doubles())
        #expect(vision.relativeL2 <= 1e-5 && vision.maxAbs <= 1e-4, "vision features: \(vision)")

        let projected = withNoGrad {
            model.imageStates(pixelValues: fixture.inputs["pixel_values"]!, aspectRatioIds: fixture.inputs["aspect_ratio_ids"]!,
                              aspectRatioMask: fixture.inputs["aspect_ratio_mask"]!)
        }
        let expectedProjected = try fixture.tensor("intermediates", "cross_attention_states")
        let projection = errors(projected.doubles(), expectedProjected.doubles())
        #expect(projected.elementCount == expectedProjected.elementCount)
        #expect(projection.relativeL2 <= 1e-5 && projection.maxAbs <= 1e-4, "projected image tokens: \(projection)")
    }

    @Test("with .huggingface masking the logits match transformers (relative L2 ≤ 1e-5, max abs ≤ 1e-4)", arguments: cases)
    func huggingfaceLogits(name: String) throws {
        let fixture = try MllamaFixture(name)
        let model = try MllamaForConditionalGeneration.load(directory: fixture.directory)
        model.crossAttentionMasking = .huggingface
        let logits = fixture.logits(of: model)
        let expected = try fixture.tensor("logits_hf", "logits")
        #expect(logits.shape == expected.shape)
        let (relative, maxAbs) = errors(fixture.rows(logits, where: fixture.isReal), fixture.rows(expected, where: fixture.isReal))
        #expect(relative <= 1e-5, "relative L2 \(relative)")
        #expect(maxAbs <= 1e-4, "max abs \(maxAbs)")
    }

    @Test("with the default (Meta) masking the logits match Meta's (relative L2 ≤ 1e-5, max abs ≤ 1e-4)", arguments: cases)
    func metaLogits(name: String) throws {
        let fixture = try MllamaFixture(name)
        let model = try MllamaForConditionalGeneration.load(directory: fixture.directory)
        #expect(model.crossAttentionMasking == .meta)
        let logits = fixture.logits(of: model)
        let expected = try fixture.tensor("logits_meta", "logits")
        let (relative, maxAbs) = errors(fixture.rows(logits, where: fixture.isReal), fixture.rows(expected, where: fixture.isReal))
        #expect(relative <= 1e-5, "relative L2 \(relative)")
        #expect(maxAbs <= 1e-4, "max abs \(maxAbs)")
    }

    /// With Meta's masking a row that sees no image gets exactly 0 from every cross-attention
    /// layer (`x + tanh(g)·0 = x`), so its logits are bit for bit those of a text-only forward
    /// pass, which skips the cross-attention layers; and they match the reference's text-only run.
    @Test("rows before the first image equal the text-only logits exactly", arguments: cases)
    func rowsBeforeTheImage(name: String) throws {
        let fixture = try MllamaFixture(name)
        let model = try MllamaForConditionalGeneration.load(directory: fixture.directory)
        let withImages = fixture.logits(of: model)
        let textOnly = withNoGrad { model(inputIds: fixture.inputs["input_ids"]!, attentionMask: fixture.inputs["attention_mask"]!) }
        let imageRows = fixture.rows(withImages, where: fixture.seesNoImage)
        #expect(!imageRows.isEmpty)
        #expect(imageRows == fixture.rows(textOnly, where: fixture.seesNoImage))
        let reference = try fixture.tensor("logits_text_only", "logits")
        let versusReference = errors(fixture.rows(textOnly, where: fixture.isReal), fixture.rows(reference, where: fixture.isReal))
        #expect(versusReference.relativeL2 <= 1e-5 && versusReference.maxAbs <= 1e-4, "text-only vs reference: \(versusReference)")
    }

    @Test("greedy generation with an image matches transformers' generate token for token", arguments: cases)
    func greedyGeneration(name: String) throws {
        let fixture = try MllamaFixture(name)
        let model = try MllamaForConditionalGeneration.load(directory: fixture.directory)
        model.crossAttentionMasking = .huggingface
        let reference = try SafetensorsFile(path: fixture.directory.appendingPathComponent("generate.safetensors").path).tensors()
        let prompt = reference["prompt_input_ids"]!.integers()
        let sequence = reference["sequences"]!.integers()
        let generation = try GenerationConfig.load(from: fixture.directory.appendingPathComponent("generation_config.json"))
        let decoder = model.conditioned(pixelValues: reference["pixel_values"]!, aspectRatioIds: reference["aspect_ratio_ids"]!,
                                        aspectRatioMask: reference["aspect_ratio_mask"]!,
                                        crossAttentionMask: reference["cross_attention_mask"]!)
        let output = generate(with: decoder, prompts: [prompt], maxNewTokens: sequence.count - prompt.count,
                              stopTokens: Set(generation.eosTokenIds ?? []))
        #expect(output[0] == Array(sequence[prompt.count...]))
    }

    @Test("the newer checkpoint layout (model.language_model.*, lm_head) loads to the same model")
    func newerLayout() throws {
        let fixture = try MllamaFixture("tiny_single_image_56")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-mllama-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(at: fixture.directory.appendingPathComponent("config.json"),
                                         to: directory.appendingPathComponent("config.json"))
        let tensors = try SafetensorsFile(path: fixture.directory.appendingPathComponent("model.safetensors").path).tensors()
        var renamed: [String: Tensor] = [:]
        for (name, tensor) in tensors {
            let newName = name.hasPrefix("language_model.model.") ? "model.language_model." + name.dropFirst("language_model.model.".count)
                : name == "language_model.lm_head.weight" ? "lm_head.weight" : "model." + name
            renamed[newName] = tensor
        }
        try writeSafetensors(tensors: renamed, to: directory.appendingPathComponent("model.safetensors"))
        let original = try MllamaForConditionalGeneration.load(directory: fixture.directory)
        let converted = try MllamaForConditionalGeneration.load(directory: directory)
        #expect(fixture.logits(of: original).doubles() == fixture.logits(of: converted).doubles())
    }
}
