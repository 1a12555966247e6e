import Checkpoint
import Foundation
import Layers
import Media
import Models
import Processing
import Testing
import TensorCore
import Tokenization
import _TestSupport
@testable import vlm

/// Special tokens of the tiny Llama's byte-level tokenizer, past its 256 byte tokens.
private let tinySpecials = ["<|begin_of_text|>": 256, "<|end_of_text|>": 257, "<|start_header_id|>": 258,
                            "<|end_header_id|>": 259, "<|eot_id|>": 260]

/// A token-stream folder made as a user makes one: a random Llama (300-token vocabulary, a
/// byte-level tokenizer with the chat format's special tokens), then `vlm adapters init` with a
/// token-stream layout of one 16-pixel tile of 8-pixel patches (5 image tokens per image;
/// `<|image|>` = 300). The encoder and projector get a wide initialisation so that images matter.
private func tokenStreamFolder(in scratch: Scratch, architecture: String) throws -> URL {
    let llama = scratch.url.appendingPathComponent("llama")
    let config = LlamaConfig(vocabSize: 300, hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 4,
                             numKeyValueHeads: 2, maxPositionEmbeddings: 256, bosTokenId: 256, eosTokenIds: [257])
    try LlamaForCausalLM(config: config, factory: ParameterFactory(.random(seed: 5, standardDeviation: 0.5))).save(to: llama)
    try writeByteTokenizer(to: llama.appendingPathComponent("tokenizer.json"), specials: tinySpecials)
    let layout = """
        architecture: \(architecture)
        vision:
          hidden_size: 16
          num_hidden_layers: 2
          num_global_layers: 1
          attention_heads: 2
          intermediate_size: 32
          image_size: 16
          patch_size: 8
          max_num_tiles: 1
          intermediate_layers_indices: [0]
          vision_output_dim: 32
        initializer_range: 0.5
        """
    let layoutPath = scratch.path("layout-\(architecture).yaml")
    try Data(layout.utf8).write(to: URL(fileURLWithPath: layoutPath))
    let folder = scratch.url.appendingPathComponent(architecture)
    try runVLM(["adapters", "init", "--text-model", llama.path, "--adapter", layoutPath, "--out", folder.path, "--seed", "3"])
    return folder
}

private let coffee = Fixtures.url("mllama/processor/coffee_crop_120x50.png").path
private let astronaut = Fixtures.url("mllama/processor/astronaut_crop_30x50.png").path

/// What the library gives for the same prompt and images: the folder's processor, `<|image|>`
/// expanded, the model's own call.
private func libraryInputs(_ folder: URL, prompt: String, images: [String]) throws
    -> (model: TokenStreamModel, ids: [Int], batch: MllamaImageBatch?, tokenizer: Tokenizer) {
    let model = try TokenStreamModel.load(directory: folder)
    let tokenizer = try Tokenizer(checkpointFile: folder.appendingPathComponent("tokenizer.json"),
                                  extraSpecialTokens: ["<|image|>": model.config.imageTokenIndex])
    let processor = try MllamaProcessor(
        imageProcessor: MllamaImageProcessor(config: try MllamaImageProcessorConfig.load(from: folder.appendingPathComponent("preprocessor_config.json"))),
        tokenizer: tokenizer)
    let ids = expandImageTokens(processor.tokenIDs(for: prompt), imageTokenID: model.config.imageTokenIndex, count: model.imageTokensPerImage)
    let batch = images.isEmpty ? nil : try processor.imageProcessor.preprocess([try images.map { try loadImage(path: $0) }])
    return (model, ids, batch, tokenizer)
}

/// The text `vlm generate` streams, caught on this thread only.
func generatedText(_ arguments: [String]) throws -> String {
    let sink = GenerateCommand.TextSink()
    Thread.current.threadDictionary[GenerateCommand.TextSink.key] = sink
    defer { Thread.current.threadDictionary.removeObject(forKey: GenerateCommand.TextSink.key) }
    try runVLM(["generate"] + arguments)
    return String(decoding: sink.data, as: UTF8.self)
}

@Suite("vlm preprocess, forward, generate and inspect with token-stream (vlmkit_token_stream) checkpoints")
struct TokenStreamCommandTests {
    @Test("vlm preprocess expands each <|image|>; vlm forward's logits are the library's, bit for bit, for two images of both projectors",
          arguments: ["llava-linear", "llava-mlp2x"])
    func forwardEqualsLibrary(architecture: String) throws {
        let scratch = try Scratch()
        let folder = try tokenStreamFolder(in: scratch, architecture: architecture)
        let prompt = "<|image|>A cup, <|image|>and a spacewalk."
        let inputs = scratch.path("inputs.safetensors")
        try runVLM(["preprocess", "--model", folder.path, "--image", coffee, "--image", astronaut, "--prompt", prompt, "--out", inputs])
        let file = try SafetensorsFile(path: inputs)
        #expect(file.names.sorted() == ["aspect_ratio_ids", "aspect_ratio_mask", "attention_mask", "input_ids", "pixel_values"])
        let (model, ids, images, _) = try libraryInputs(folder, prompt: prompt, images: [coffee, astronaut])
        let batch = try #require(images)
        #expect(try file.tensor("input_ids").integers() == ids)
        #expect(ids.count(where: { $0 == 300 }) == 2 * 5)

        let out = scratch.path("logits.safetensors")
        try runVLM(["forward", "--model", folder.path, "--inputs", inputs, "--out", out])
        let logits = try SafetensorsFile(path: out).tensor("logits")
        let idTensor = Tensor(indices: ids, shape: [1, ids.count])
        let expected = withNoGrad {
            model.logits(hiddenStates: model.hiddenStates(inputIds: idTensor, pixelValues: batch.pixelValues,
                                                          aspectRatioIds: batch.aspectRatioIDs, aspectRatioMask: batch.aspectRatioMask))
        }
        #expect(logits.shape == [1, ids.count, 300])
        #expect(logits.floats() == expected.floats())
        // The images are read: other pictures change the logits after the first image's tokens, not before.
        let swapped = try #require(try libraryInputs(folder, prompt: prompt, images: [astronaut, coffee]).batch)
        let other = withNoGrad {
            model.logits(hiddenStates: model.hiddenStates(inputIds: idTensor, pixelValues: swapped.pixelValues,
                                                          aspectRatioIds: swapped.aspectRatioIDs, aspectRatioMask: swapped.aspectRatioMask))
        }
        let firstImage = ids.firstIndex(of: 300)!, v = 300
        #expect(Array(other.floats()[0 ..< firstImage * v]) == Array(logits.floats()[0 ..< firstImage * v]))
        #expect(other.floats()[(ids.count - 1) * v ..< ids.count * v] != logits.floats()[(ids.count - 1) * v ..< ids.count * v])

        try runVLM(["inspect", folder.path, "--summary"])
    }

    @Test("vlm generate --image gives the library's greedy tokens, for plain and chat prompts and without images")
    func generateEqualsLibrary() throws {
        let scratch = try Scratch()
        let folder = try tokenStreamFolder(in: scratch, architecture: "llava-mlp2x")
        for (prompt, images) in [("<|image|>A cup and <|image|>", [coffee, astronaut]), ("Say", [coffee]), ("Plain text", [])] {
            let marked = images.isEmpty || prompt.contains("<|image|>") ? prompt : "<|image|>" + prompt
            let (model, ids, batch, tokenizer) = try libraryInputs(folder, prompt: marked, images: images)
            let decoder: any IncrementalDecoder = batch.map {
                model.conditioned(pixelValues: $0.pixelValues, aspectRatioIds: $0.aspectRatioIDs, aspectRatioMask: $0.aspectRatioMask)
            } ?? model
            let tokens = generate(with: decoder, prompts: [ids], maxNewTokens: 8, stopTokens: [257])[0].filter { $0 != 257 }
            let text = try generatedText(["--model", folder.path, "--prompt", prompt, "--max-tokens", "8"] + images.flatMap { ["--image", $0] })
            #expect(text == tokenizer.decode(tokens) + "\n", "\(prompt): \(tokens)")
        }
        // The chat format: the images as the user message's first parts, as `vlm train` encodes questions.
        let (model, _, images, tokenizer) = try libraryInputs(folder, prompt: "", images: [coffee])
        let batch = try #require(images)
        let chatIDs = try Llama3ChatFormat(tokenizer: tokenizer).encode(
            [ChatMessage(role: .user, parts: [.image, .text("What is it?")])], addGenerationPrompt: true).ids
        let expanded = expandImageTokens(chatIDs, imageTokenID: 300, count: 5)
        let decoder = model.conditioned(pixelValues: batch.pixelValues, aspectRatioIds: batch.aspectRatioIDs, aspectRatioMask: batch.aspectRatioMask)
        let tokens = generate(with: decoder, prompts: [expanded], maxNewTokens: 8, stopTokens: [257, 260])[0].filter { ![257, 260].contains($0) }
        let text = try generatedText(["--model", folder.path, "--prompt", "What is it?", "--chat", "--image", coffee, "--max-tokens", "8"])
        #expect(text == tokenizer.decode(tokens) + "\n")
    }

    @Test("Image counts that do not match are messages: markers against --image, image tokens against pixel_values")
    func mismatchedImageCounts() throws {
        let scratch = try Scratch()
        let folder = try tokenStreamFolder(in: scratch, architecture: "llava-linear")
        let markers = failure(["generate", "--model", folder.path, "--image", coffee, "--prompt", "<|image|>one <|image|>two"])
        #expect(markers?.status == 1 && markers?.message.contains("holds 2 <|image|> markers but 1 image was given") == true,
                "\(String(describing: markers))")
        let preprocess = failure(["preprocess", "--model", folder.path, "--image", coffee, "--image", coffee, "--prompt", "<|image|>x",
                                  "--out", scratch.path("x.safetensors")])
        #expect(preprocess?.message.contains("holds 1 <|image|> marker but 2 images were given") == true, "\(String(describing: preprocess))")

        // Ids as the processor writes them (one <|image|> per image) are refused with the way out.
        let (_, ids, images, _) = try libraryInputs(folder, prompt: "<|image|>cup", images: [coffee])
        let batch = try #require(images)
        let unexpanded = ids.enumerated().filter { $0.element != 300 || $0.offset == ids.firstIndex(of: 300) }.map(\.element)
        let cases: [(ids: [Int], pixels: Bool, message: String)] = [
            (unexpanded, true, "row 0 of input_ids holds 1 <|image|> tokens (id 300), but 1 image (aspect_ratio_ids ≠ 0) need 5 each = 5 (one <|image|> per image"),
            (ids, false, "row 0 of input_ids holds 5 <|image|> tokens (id 300), but 0 images (aspect_ratio_ids ≠ 0) need 5 each = 0"),
            (ids.filter { $0 != 300 }, true, "row 0 of input_ids holds 0 <|image|> tokens"),
            (ids + [301], true, "token id 301 is outside the text vocabulary of 300"),
        ]
        for (caseIDs, pixels, message) in cases {
            let path = scratch.path("inputs-\(UUID().uuidString).safetensors")
            var tensors: [(String, Tensor)] = [("input_ids", Tensor(indices: caseIDs, shape: [1, caseIDs.count]))]
            if pixels {
                tensors += [("pixel_values", batch.pixelValues), ("aspect_ratio_ids", batch.aspectRatioIDs), ("aspect_ratio_mask", batch.aspectRatioMask)]
            }
            try writeSafetensors(tensors: tensors, to: URL(fileURLWithPath: path))
            let result = failure(["forward", "--model", folder.path, "--inputs", path, "--out", scratch.path("out.safetensors")])
            #expect(result?.status == 1 && result?.message.contains(message) == true, "expected '\(message)': \(String(describing: result))")
        }
        let crossMask = scratch.path("cross.safetensors")
        try writeSafetensors(tensors: [("input_ids", Tensor(indices: ids, shape: [1, ids.count])),
                                       ("cross_attention_mask", Tensor(zeros: [1, ids.count, 1, 1]))], to: URL(fileURLWithPath: crossMask))
        let unknown = failure(["forward", "--model", folder.path, "--inputs", crossMask, "--out", scratch.path("out.safetensors")])
        #expect(unknown?.message.contains("unknown tensor 'cross_attention_mask'") == true, "\(String(describing: unknown))")
    }
}
