import Foundation
import Testing
import _TestSupport
@testable import Checkpoint

@Suite("Hugging Face configurations")
struct ConfigTests {
    private func decode<T: HuggingFaceConfiguration>(_ type: T.Type, _ json: String) throws -> T {
        try T.decode(Data(json.utf8), file: "config.json")
    }

    private func error<T: HuggingFaceConfiguration>(_ type: T.Type, _ json: String) -> String? {
        thrownDescription { _ = try decode(type, json) }
    }

    @Test("The tiny Llama config transformers wrote (rope_parameters spelling, llama3 scaling) decodes")
    func tinyLlama() throws {
        let config = try LlamaConfig.load(from: Fixtures.url("checkpoint/tiny_llama"))
        #expect(config.hiddenSize == 64 && config.numHiddenLayers == 2 && config.numAttentionHeads == 4)
        #expect(config.numKeyValueHeads == 2 && config.headDim == 16 && config.vocabSize == 128)
        #expect(config.rope == .llama3(theta: 500_000))
        #expect(config.eosTokenIds == [1, 2] && config.bosTokenId == 0 && config.padTokenId == nil)
        #expect(config.rmsNormEps == 1e-6 && config.maxPositionEmbeddings == 16384)
    }

    @Test("The published Llama 3.1 8B config (rope_theta + rope_scaling spelling) decodes")
    func publishedLlama() throws {
        guard case .llama(let config) = try ModelConfig.load(from: Fixtures.url("checkpoint/published/llama-3.1-8b")) else {
            Issue.record("expected a llama config"); return
        }
        #expect(config.hiddenSize == 4096 && config.intermediateSize == 14336 && config.numHiddenLayers == 32)
        #expect(config.numKeyValueHeads == 8 && config.headDim == 128 && config.vocabSize == 128_256)
        #expect(config.rope == .llama3(theta: 500_000) && config.ropeTheta == 500_000)
        #expect(config.torchDType == "bfloat16" && config.eosTokenIds == [128_001] && config.rmsNormEps == 1e-5)
    }

    @Test("Both rope spellings decode to the same parameters, and the legacy 'type' key is accepted")
    func ropeSpellings() throws {
        let sizes = #""vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2"#
        let scaling = #""factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192"#
        let old = try decode(LlamaConfig.self, #"{\#(sizes), "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", \#(scaling)}}"#)
        let new = try decode(LlamaConfig.self, #"{\#(sizes), "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, \#(scaling)}}"#)
        let legacy = try decode(LlamaConfig.self, #"{\#(sizes), "rope_theta": 500000.0, "rope_scaling": {"type": "llama3", \#(scaling)}}"#)
        #expect(old.rope == new.rope && new.rope == legacy.rope && old.rope == .llama3())
        let plain = try decode(LlamaConfig.self, "{\(sizes)}")
        #expect(plain.rope == RopeParameters(ropeType: "default", ropeTheta: 10_000))
        #expect(plain.numKeyValueHeads == 2 && plain.headDim == 4 && plain.bosTokenId == 1 && plain.eosTokenIds == [2])
        let defaultType = try decode(LlamaConfig.self, #"{\#(sizes), "rope_parameters": {"rope_type": "default", "rope_theta": 1234.0}}"#)
        #expect(defaultType.rope.ropeTheta == 1234)
    }

    @Test("Missing or invalid fields are errors naming the file and the field")
    func fieldErrors() {
        let sizes = #""vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2"#
        #expect(error(LlamaConfig.self, #"{"vocab_size": 10}"#) == "config.json: missing required field 'hidden_size'")
        #expect(error(LlamaConfig.self, #"{\#(sizes), "rope_scaling": {"rope_type": "llama3"}}"#)
                == "config.json: rope_scaling must contain 'factor'")
        #expect(error(LlamaConfig.self, #"{\#(sizes), "rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 1.0}}"#)
                == "config.json: rope_parameters must contain 'low_freq_factor'")
        #expect(error(LlamaConfig.self, #"{\#(sizes), "rope_scaling": {"rope_type": "yarn", "factor": 2.0}}"#)?.contains("rope_type 'yarn'") == true)
        #expect(error(LlamaConfig.self, #"{"vocab_size": 10, "hidden_size": "eight"}"#) == "config.json: field 'hidden_size' is not an integer")
        #expect(error(LlamaConfig.self, #"{\#(sizes), "num_key_value_heads": 3}"#)?.contains("num_key_value_heads (3) must divide") == true)
        #expect(error(LlamaConfig.self, #"{\#(sizes), "eos_token_id": "x"}"#)?.contains("eos_token_id must be an integer or a list") == true)
        #expect(error(LlamaConfig.self, "{not json") == "config.json: not valid JSON")
        #expect(error(MllamaConfig.self, #"{"model_type": "mllama", "vision_config": {}}"#) == "config.json: missing required field 'text_config'")
        #expect(error(ModelConfig.self, #"{"hidden_size": 3}"#) == "config.json: missing required field 'model_type'")
        #expect(error(ModelConfig.self, #"{"model_type": "gpt2"}"#)?.contains("model_type 'gpt2' is not supported") == true)
        let nested = #"{"model_type": "mllama", "vision_config": {"hidden_size": 32, "num_hidden_layers": 2, "attention_heads": 2, "intermediate_size": 64}, "text_config": {"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2}}"#
        #expect(error(ModelConfig.self, nested) == "config.json: missing required field 'text_config.intermediate_size'")
    }

    @Test("A missing config file is an error naming it")
    func missingFile() {
        let message = thrownDescription { _ = try LlamaConfig.load(from: URL(fileURLWithPath: "/nonexistent/folder/config.json")) }
        #expect(message?.hasPrefix("/nonexistent/folder/config.json:") == true)
    }

    @Test("The tiny Mllama config transformers wrote decodes, with transformers' text defaults")
    func tinyMllama() throws {
        guard case .mllama(let config) = try ModelConfig.load(from: Fixtures.url("checkpoint/tiny_mllama")) else {
            Issue.record("expected an mllama config"); return
        }
        #expect(config.imageTokenIndex == 159)
        #expect(config.textConfig.hiddenSize == 64 && config.textConfig.crossAttentionLayers == [1, 3])
        #expect(config.textConfig.numKeyValueHeads == 2 && config.textConfig.rope == RopeParameters(ropeTheta: 500_000))
        #expect(config.textConfig.bosTokenId == 128_000 && config.textConfig.padTokenId == 128_004)
        #expect(config.textConfig.rmsNormEps == 1e-5 && config.textConfig.modelType == "mllama_text_model")
        let vision = config.visionConfig
        #expect(vision.hiddenSize == 32 && vision.numHiddenLayers == 2 && vision.numGlobalLayers == 1 && vision.attentionHeads == 2)
        #expect(vision.imageSize == 28 && vision.patchSize == 14 && vision.maxNumTiles == 4 && vision.visionOutputDim == 96)
        #expect(vision.intermediateLayersIndices == [0, 1] && vision.supportedAspectRatios.count == 8 && vision.normEps == 1e-5)
    }

    @Test("The published Llama 3.2 11B Vision config, preprocessor and generation config decode")
    func publishedMllama() throws {
        let folder = Fixtures.url("checkpoint/published/llama-3.2-11b-vision")
        let config = try MllamaConfig.load(from: folder)
        #expect(config.textConfig.numHiddenLayers == 40 && config.textConfig.crossAttentionLayers == MllamaTextConfig.defaultCrossAttentionLayers)
        #expect(config.textConfig.rope == .llama3() && config.textConfig.vocabSize == 128_256 && config.imageTokenIndex == 128_256)
        #expect(config.visionConfig.imageSize == 560 && config.visionConfig.hiddenSize == 1280 && config.visionConfig.visionOutputDim == 7680)
        #expect(config.visionConfig.supportedAspectRatios == MllamaVisionConfig.defaultSupportedAspectRatios)
        #expect(config.torchDType == "bfloat16")

        let processor = try MllamaImageProcessorConfig.load(from: folder)
        #expect(processor.size == ImageProcessorSize(height: 560, width: 560) && processor.maxImageTiles == 4)
        #expect(processor.imageMean == CLIPImageProcessorConfig.openAIMean && processor.resample == ResampleFilter.bilinear.rawValue)
        #expect(processor.rescaleFactor == 1.0 / 255.0 && processor.doPad)

        let generation = try GenerationConfig.load(from: folder)
        #expect(generation.eosTokenIds == [128_001, 128_008, 128_009] && generation.padTokenId == 128_004)
        #expect(generation.doSample && generation.temperature == 0.6 && generation.topP == 0.9 && generation.topK == 50)
        #expect(generation.maxNewTokens == nil && generation.maxLength == 20)
    }

    @Test("The tiny LLaVA config and CLIP image processor transformers wrote decode")
    func tinyLlava() throws {
        let folder = Fixtures.url("checkpoint/tiny_llava")
        guard case .llava(let config) = try ModelConfig.load(from: folder) else { Issue.record("expected llava"); return }
        #expect(config.imageTokenIndex == 159 && config.projectorHiddenAct == "gelu")
        #expect(config.visionFeatureLayers == [-2] && config.visionFeatureSelectStrategy == "default")
        #expect(config.visionConfig == CLIPVisionConfig(hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2,
                                                        numAttentionHeads: 2, imageSize: 28, patchSize: 14, projectionDim: 16))
        #expect(config.textConfig.numKeyValueHeads == 4 && config.textConfig.rope.ropeTheta == 10_000)
        let processor = try CLIPImageProcessorConfig.load(from: folder)
        #expect(processor.size == ImageProcessorSize(shortestEdge: 336))
        #expect(processor.cropSize == ImageProcessorSize(height: 336, width: 336))
        #expect(processor.resample == ResampleFilter.bicubic.rawValue && processor.imageStd == CLIPImageProcessorConfig.openAIStd)
        let legacy = try decode(CLIPImageProcessorConfig.self, #"{"size": 224, "crop_size": 224}"#)
        #expect(legacy.size.shortestEdge == 224 && legacy.cropSize == ImageProcessorSize(height: 224, width: 224))
        let defaults = try decode(MllamaImageProcessorConfig.self, "{}")
        #expect(defaults == MllamaImageProcessorConfig())
        #expect(try MllamaImageProcessorConfig.load(from: Fixtures.url("checkpoint/tiny_mllama")) == MllamaImageProcessorConfig())
    }

    /// llava-hf/llava-1.5-7b-hf's config.json (its fields as published): the text model's width and
    /// depth are left to transformers' LlamaConfig defaults (Llama 2 7B).
    @Test("llava-hf's LLaVA-1.5 config, whose text_config omits width and depth, gets transformers' LlamaConfig defaults")
    func publishedLlava() throws {
        let json = #"""
        {"architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": 32000,
         "model_type": "llava", "pad_token_id": 32001, "projector_hidden_act": "gelu",
         "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
                         "max_position_embeddings": 4096, "model_type": "llama", "rms_norm_eps": 1e-05,
                         "torch_dtype": "float16", "vocab_size": 32064},
         "tie_word_embeddings": false, "torch_dtype": "float16", "transformers_version": "4.36.0.dev0",
         "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096, "model_type": "clip_vision_model",
                           "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768,
                           "vocab_size": 32000},
         "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064}
        """#
        let config = try decode(LlavaConfig.self, json)
        let text = config.textConfig
        #expect(text.vocabSize == 32_064 && text.hiddenSize == 4096 && text.intermediateSize == 11_008)
        #expect(text.numHiddenLayers == 32 && text.numAttentionHeads == 32 && text.numKeyValueHeads == 32)
        #expect(text.maxPositionEmbeddings == 4096 && text.rmsNormEps == 1e-5)
        #expect(config.visionConfig.imageSize == 336 && config.visionConfig.patchSize == 14 && config.visionConfig.hiddenAct == "quick_gelu")
        #expect(config.projectorType == "mlp2x" && config.imageTokenIndex == 32_000)
        // A nested error still names the field.
        #expect(throws: (any Error).self) { try decode(LlavaConfig.self, json.replacingOccurrences(of: #""rms_norm_eps": 1e-05"#, with: #""rms_norm_eps": "x""#)) }
    }

    /// VLMKit writes the published spelling, which transformers 4.45.2 (the Llama 3.2 Vision
    /// release, whose Mllama requires `rope_scaling`) and 5.x both read.
    @Test("Configs encode in the published rope_theta + rope_scaling spelling and decode back equal")
    func roundTrip() throws {
        let text = LlamaConfig(vocabSize: 32, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 2, numAttentionHeads: 4,
                               numKeyValueHeads: 2, rope: .llama3(), eosTokenIds: [5, 6])
        let mllama = MllamaConfig(textConfig: MllamaTextConfig(llama: text, crossAttentionLayers: [1]),
                                  visionConfig: MllamaVisionConfig(hiddenSize: 16, numHiddenLayers: 2, attentionHeads: 2,
                                                                   intermediateSize: 32, imageSize: 28))
        let llava = LlavaConfig(visionConfig: CLIPVisionConfig(hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 2,
                                                               numAttentionHeads: 2, imageSize: 28, patchSize: 14),
                                textConfig: text, visionFeatureLayers: [-2, -5])
        for model in [ModelConfig.llama(text), .mllama(mllama), .llava(llava)] {
            let data = try model.jsonData()
            let decoded = try ModelConfig.decode(data, file: "roundtrip.json")
            #expect(decoded == model, "\(decoded) != \(model)")
            let json = String(decoding: data, as: UTF8.self)
            #expect(json.contains("\"rope_scaling\"") && json.contains("\"rope_theta\"") && !json.contains("\"rope_parameters\""))
        }
        let generation = GenerationConfig(eosTokenIds: [1, 2], doSample: true, temperature: 0.7, maxNewTokens: 64)
        #expect(try GenerationConfig.decode(generation.jsonData(), file: "g.json") == generation)
    }
}
