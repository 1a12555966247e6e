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

    /// The cache holds the image's keys and values after the prompt; later steps pass no pixels and
    /// repeat the prompt's last cross-attention mask row, and must reproduce the logits transformers
    /// recorded at every step (`scores`).
    @Test("decoding from the cache reproduces transformers' per-step logits", arguments: cases)
    func cachedDecodingScores(name: String) throws {
        let fixture = try MllamaFixture(name)
        let model = try MllamaForConditionalGeneration.load(directory: fixture.directory)
        model.crossAttentionMasking = .huggingface
        let reference = try SafetensorsFile(path: fixture.directory.appendingPathComponent("generate.safetensors").path).tensors()
        let prompt = reference["prompt_input_ids"]!, sequence = reference["sequences"]!.integers()
        let scores = reference["scores"]!
        let (steps, v) = (scores.shape[1], scores.shape[2])
        let cache = model.makeCache(batch: 1, capacity: sequence.count)
        var logits = withNoGrad {
            model(inputIds: prompt, pixelValues: reference["pixel_values"]!, aspectRatioIds: reference["aspect_ratio_ids"]!,
                  aspectRatioMask: reference["aspect_ratio_mask"]!, crossAttentionMask: reference["cross_attention_mask"]!,
                  cache: cache)
        }
        #expect(cache.hasImage)
        let expected = scores.doubles()
        for step in 0..<steps {
            let last = Array(logits.doubles().suffix(v))
            let stepErrors = errors(last, Array(expected[(step * v)..<((step + 1) * v)]))
            #expect(stepErrors.maxAbs <= 1e-4, "step \(step): \(stepErrors)")
            let token = sequence[prompt.shape[1] + step]
            logits = withNoGrad { model(inputIds: Tensor(indices: [token], shape: [1, 1]), cache: cache) }
        }
    }

    /// The self-attention layers are Llama's: a Llama built from the fixture's text weights (the
    /// self-attention layers renumbered, the embedding's text rows) gives the same logits bit for bit.
    @Test("with no image the logits are exactly those of the Llama text model")
    func textOnlyIsLlama() throws {
        let fixture = try MllamaFixture("tiny_multi_image")
        let model = try MllamaForConditionalGeneration.load(directory: fixture.directory)
        let text = model.config.textConfig
        var llamaConfig = text.llama
        let selfLayers = (0..<llamaConfig.numHiddenLayers).filter { !text.crossAttentionLayers.contains($0) }
        llamaConfig.numHiddenLayers = selfLayers.count
        llamaConfig.modelType = "llama"
        let llama = LlamaForCausalLM(config: llamaConfig, factory: ParameterFactory(.uninitialized))
        var tensors: [String: Tensor] = [:]
        for (name, tensor) in model.parameters() {
            if name == "language_model.model.embed_tokens.weight" { tensors["model.embed_tokens.weight"] = tensor }
            else if name == "language_model.model.norm.weight" { tensors["model.norm.weight"] = tensor }
            else if name == "language_model.lm_head.weight" { tensors["lm_head.weight"] = tensor }
            else if name.hasPrefix("language_model.model.layers.") {
                let rest = name.dropFirst("language_model.model.layers.".count)
                let index = Int(rest.prefix { $0 != "." })!
                if let position = selfLayers.firstIndex(of: index) {
                    tensors["model.layers.\(position)" + rest.drop { $0 != "." }] = tensor
                }
            }
        }
        try llama.loadParameters(tensors)
        let ids = fixture.inputs["input_ids"]!.integers().map { $0 == model.config.imageTokenIndex ? 5 : $0 }
        let idsTensor = Tensor(indices: ids, shape: fixture.inputs["input_ids"]!.shape)
        let mask = fixture.inputs["attention_mask"]!
        let fromMllama = withNoGrad { model(inputIds: idsTensor, attentionMask: mask) }
        let fromLlama = withNoGrad { llama(idsTensor, attentionMask: mask) }
        #expect(fromMllama.doubles() == fromLlama.doubles())
        let prompts = [[1, 10, 11, 12], [1, 40]]
        #expect(generate(with: model, prompts: prompts, maxNewTokens: 6) == generate(with: llama, prompts: prompts, maxNewTokens: 6))
    }

    /// transformers' additive mask is 0 or `finfo.min` and its row mask 0 or 1; ours hides with −∞
    /// where transformers adds `min` (the same softmax weights: exactly 0) and has the same row mask.
    @Test("the prepared cross-attention mask is transformers' (.huggingface)", arguments: cases)
    func crossAttentionMaskMatches(name: String) throws {
        let fixture = try MllamaFixture(name)
        let model = try MllamaForConditionalGeneration.load(directory: fixture.directory)
        let prepared = PreparedCrossAttentionMask(tiles: fixture.inputs["cross_attention_mask"]!,
                                                  tokensPerTile: model.visionModel.tokensPerTile, masking: .huggingface, dtype: .float32)
        let expected = try fixture.tensor("intermediates", "cross_attention_mask_4d")
        #expect(prepared.additive!.shape == expected.shape)
        #expect(prepared.additive!.doubles().map { $0 == 0 } == expected.doubles().map { $0 == 0 })
        let rows = try fixture.tensor("intermediates", "full_text_row_masked_out_mask")
        #expect(prepared.rowVisible!.doubles() == rows.doubles())
    }

    @Test("loading reports every missing, unexpected and mis-shaped tensor by name")
    func strictLoading() throws {
        let fixture = try MllamaFixture("tiny_single_image_56")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-mllama-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(at: fixture.directory.appendingPathComponent("config.json"),
                                         to: directory.appendingPathComponent("config.json"))
        var tensors = try SafetensorsFile(path: fixture.directory.appendingPathComponent("model.safetensors").path).tensors()
        tensors["language_model.model.layers.1.cross_attn_mlp_gate"] = nil
        tensors["vision_model.layernorm_pre.bias"] = Tensor(zeros: [3])
        tensors["vision_model.extra"] = Tensor(zeros: [1])
        try writeSafetensors(tensors: tensors, to: directory.appendingPathComponent("model.safetensors"))
        #expect {
            try MllamaForConditionalGeneration.load(directory: directory)
        } throws: { error in
            let text = "\(error)"
            return text.contains("language_model.model.layers.1.cross_attn_mlp_gate") && text.contains("vision_model.extra")
                && text.contains("vision_model.layernorm_pre.bias expects [32], found [3]")
        }
    }

    @Test("batched prompts with images and of different lengths generate what each generates alone")
    func batchedGenerationWithImages() throws {
        let fixture = try MllamaFixture("tiny_single_image_56")
        let model = try MllamaForConditionalGeneration.load(directory: fixture.directory)
        let reference = try SafetensorsFile(path: fixture.directory.appendingPathComponent("generate.safetensors").path).tensors()
        let image = reference["pixel_values"]!                                   // (1, 1, 4, 3, 56, 56), a 2×2 image
        let flipped = Tensor(image.floats().reversed(), shape: image.shape)
        let pixels = Tensor.concatenate([image, flipped], axis: 0)
        let ratios = Tensor.concatenate([reference["aspect_ratio_ids"]!, reference["aspect_ratio_ids"]!], axis: 0)
        let tiles = Tensor.concatenate([reference["aspect_ratio_mask"]!, reference["aspect_ratio_mask"]!], axis: 0)
        let prompts = [reference["prompt_input_ids"]!.integers(), [1, 128, 17]]
        // Each token sees the image from its `<|image|>` on, all four tiles.
        let masks = prompts.map { prompt in
            let start = prompt.firstIndex(of: 128)!
            return Tensor(indices: prompt.indices.flatMap { Array(repeating: $0 >= start ? 1 : 0, count: 4) }, shape: [prompt.count, 1, 4])
        }
        for masking in [CrossAttentionMasking.meta, .huggingface] {
            model.crossAttentionMasking = masking
            let batched = generate(with: model.conditioned(pixelValues: pixels, aspectRatioIds: ratios, aspectRatioMask: tiles,
                                                           crossAttentionMask: MllamaForConditionalGeneration.leftPaddedCrossAttentionMask(masks)),
                                   prompts: prompts, maxNewTokens: 8)
            for row in 0..<2 {
                let alone = generate(with: model.conditioned(pixelValues: pixels.slice(axis: 0, row..<(row + 1)),
                                                             aspectRatioIds: ratios.slice(axis: 0, row..<(row + 1)),
                                                             aspectRatioMask: tiles.slice(axis: 0, row..<(row + 1)),
                                                             crossAttentionMask: masks[row].unsqueezed(axis: 0)),
                                     prompts: [prompts[row]], maxNewTokens: 8)
                #expect(batched[row] == alone[0], "\(masking) row \(row)")
            }
        }
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
