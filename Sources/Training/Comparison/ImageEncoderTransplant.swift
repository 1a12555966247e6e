import Checkpoint
import Foundation
import TensorCore

/// Puts a trained image encoder into a freshly initialised model: every `vision_model.` tensor of
/// the checkpoint in `folder` is replaced by the tensor of the same name (after that prefix) in
/// `source`. The comparison uses it so that every fusion design starts from the main job's
/// pretrained encoder (an `encoder` stage's output), as LLaVA starts from CLIP's.
public enum ImageEncoderTransplant {
    static let prefix = "vision_model."

    /// A fingerprint of the image encoder in the checkpoint folder `source`: its `vision_model.`
    /// tensors' names, shapes and bytes.
    public static func fingerprint(of source: URL) throws -> String {
        let tensors = try SafetensorsFile(path: source.appendingPathComponent("model.safetensors").path).tensors()
        var hash = ContentHash()
        for name in tensors.keys.sorted() where name.contains(prefix) {
            hash.add(name)
            hash.add(tensors[name]!)
        }
        return hash.hex
    }

    /// - Throws: ``CheckpointError`` naming the file and tensor when `source` lacks one of the
    ///   encoder's tensors or holds it in another shape.
    public static func apply(from source: URL, to folder: URL) throws {
        let sourceFile = source.appendingPathComponent("model.safetensors"), targetFile = folder.appendingPathComponent("model.safetensors")
        let donor = try SafetensorsFile(path: sourceFile.path).tensors()
        func encoderName(_ name: String) -> String? { name.range(of: prefix).map { String(name[$0.lowerBound...]) } }
        let donated = Dictionary(donor.compactMap { name, tensor in encoderName(name).map { ($0, tensor) } }, uniquingKeysWith: { a, _ in a })
        let target = try SafetensorsFile(path: targetFile.path)
        var tensors = try target.tensors().mapValues { $0.copy() }   // copies: the file is rewritten below
        for (name, tensor) in tensors {
            guard let key = encoderName(name) else { continue }
            guard let replacement = donated[key] else {
                throw CheckpointError(file: sourceFile.path, reason: "no image-encoder tensor '\(key)'; it is not a checkpoint of the same encoder")
            }
            guard replacement.shape == tensor.shape else {
                throw CheckpointError(file: sourceFile.path, reason: "'\(key)' is \(replacement.shape), the model's encoder needs \(tensor.shape)")
            }
            tensors[name] = replacement.converted(to: tensor.dtype).copy()
        }
        try writeSafetensors(tensors: tensors, metadata: target.metadata, to: targetFile)
    }
}
