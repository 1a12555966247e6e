import Checkpoint
import Foundation

/// The model families VLMKit loads from a checkpoint folder, by `config.json`'s `model_type`.
public enum ModelFamily: String, Sendable {
    case llama, mllama, llava
    /// VLMKit's controlled comparison model (``TokenStreamModel``).
    case tokenStream = "vlmkit_token_stream"
}

/// A model loaded from a Hugging Face checkpoint folder, whatever its family.
public struct LoadedModel {
    public let family: ModelFamily
    public let model: any TrainableLanguageModel
    /// The folder it came from.
    public let directory: URL

    /// Reads `config.json`'s `model_type` and loads the folder with that family's loader.
    /// - Throws: ``CheckpointError`` naming the folder for a missing config or an unsupported type.
    public static func load(directory: URL) throws -> LoadedModel {
        let configURL = directory.appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configURL.path) else {
            throw CheckpointError(file: configURL.path, reason: "missing: a model folder needs config.json")
        }
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        let type = object?["model_type"] as? String ?? ""
        switch ModelFamily(rawValue: type) {
        case .llama: return LoadedModel(family: .llama, model: try LlamaForCausalLM.load(directory: directory), directory: directory)
        case .mllama:
            return LoadedModel(family: .mllama, model: try MllamaForConditionalGeneration.load(directory: directory), directory: directory)
        case .llava:
            return LoadedModel(family: .llava, model: try LlavaForConditionalGeneration.load(directory: directory), directory: directory)
        case .tokenStream:
            return LoadedModel(family: .tokenStream, model: try TokenStreamModel.load(directory: directory), directory: directory)
        case nil:
            throw CheckpointError(file: configURL.path, reason: "model_type '\(type)' is not supported (llama, mllama, llava, vlmkit_token_stream)")
        }
    }

    /// Writes the model's `config.json` and weights into `directory`.
    public func save(to directory: URL) throws {
        switch model {
        case let llama as LlamaForCausalLM: try llama.save(to: directory)
        case let mllama as MllamaForConditionalGeneration: try mllama.save(to: directory)
        case let llava as LlavaForConditionalGeneration: try llava.save(to: directory)
        case let tokenStream as TokenStreamModel: try tokenStream.save(to: directory)
        default: fatalError("unreachable: \(type(of: model))")
        }
    }
}
