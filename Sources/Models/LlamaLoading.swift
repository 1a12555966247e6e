import Checkpoint
import Foundation
import Layers
import TensorCore

extension LlamaForCausalLM {
    /// The weights of a checkpoint directory, found as `from_pretrained` finds them: the shard index
    /// `model.safetensors.index.json` if present, otherwise `model.safetensors` (or `.safetensors.zst`).
    public static func weightsPath(in directory: URL) throws -> String {
        for name in ["model.safetensors.index.json", "model.safetensors", "model.safetensors.zst"] {
            let path = directory.appendingPathComponent(name).path
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        throw CheckpointError(file: directory.path, reason: "no model.safetensors, model.safetensors.zst or model.safetensors.index.json")
    }

    /// Loads a Hugging Face Llama checkpoint directory: `config.json` and `model.safetensors` (or
    /// shards with `model.safetensors.index.json`).
    ///
    /// Weights are memory-mapped and stay in their stored dtype (bf16 stays bf16): the model is
    /// frozen, ready for inference or to be wrapped by adapters. Loading is strict — a missing,
    /// unexpected or mis-shaped tensor is an error listing the names. Non-persistent buffers that
    /// old checkpoints carry (`rotary_emb.inv_freq`) are ignored.
    public static func load(directory: URL) throws -> LlamaForCausalLM {
        let config = try LlamaConfig.load(from: directory.appendingPathComponent("config.json"))
        let model = LlamaForCausalLM(config: config, factory: ParameterFactory(.uninitialized))
        let checkpoint = try SafetensorsCheckpoint(path: try weightsPath(in: directory))
        var tensors: [String: Tensor] = [:]
        for name in checkpoint.names where !name.hasSuffix("rotary_emb.inv_freq") {
            tensors[name] = try checkpoint.tensor(name)
        }
        try model.loadParameters(tensors, source: directory.path)
        return model
    }
}

extension LlamaForCausalLM {
    /// Writes `config.json` and `model.safetensors` (transformers' names, each tensor in its dtype)
    /// into `directory`, creating it; each file is written atomically. A tied head is not written.
    public func save(to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let tensors = Dictionary(uniqueKeysWithValues: parameters().map { ($0.name, $0.tensor.detached()) })
        try writeSafetensors(tensors: tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent("model.safetensors"))
        try AtomicFile.write(try config.jsonData(), to: directory.appendingPathComponent("config.json"))
    }
}
