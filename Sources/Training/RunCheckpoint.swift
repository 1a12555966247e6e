import Checkpoint
import Foundation
import Layers
import TensorCore

/// Everything besides weights and moments that a stage needs to continue exactly where it stopped.
public struct RunProgress: Codable, Sendable, Equatable {
    /// Optimiser steps done.
    public var step: Int
    /// Where the data loader is (opaque to the trainer; JSON from the loader).
    public var dataPosition: Data
    /// Consecutive steps skipped for a non-finite loss or gradient.
    public var nonFiniteStreak: Int
    /// Bytes of `metrics.jsonl` written up to this checkpoint (lines after it are dropped on resume).
    public var metricsBytes: Int
    /// Wall-clock seconds spent training so far (for reports; not part of the computation).
    public var elapsedSeconds: Double
    /// The optimiser's per-parameter step counts.
    public var optimizerStepCounts: [String: Int]
    /// The settings digest of the stage the checkpoint belongs to.
    public var settingsDigest: String

    public init(step: Int, dataPosition: Data, nonFiniteStreak: Int, metricsBytes: Int, elapsedSeconds: Double,
                optimizerStepCounts: [String: Int], settingsDigest: String) {
        self.step = step
        self.dataPosition = dataPosition
        self.nonFiniteStreak = nonFiniteStreak
        self.metricsBytes = metricsBytes
        self.elapsedSeconds = elapsedSeconds
        self.optimizerStepCounts = optimizerStepCounts
        self.settingsDigest = settingsDigest
    }
}

/// A stage's run checkpoints: `checkpoints/step-NNNNNNNN/` holding `trainable.safetensors` (the
/// trainable weights, float32), `optimizer.safetensors` (AdamW moments by parameter name) and
/// `progress.json`. Each folder appears whole (``DirectoryCommit``); the previous one is removed
/// only after the new one is complete, so a kill at any moment leaves at least one whole checkpoint.
public enum RunCheckpoint {
    static let prefix = "step-"

    /// Writes a checkpoint of `optimizer`'s parameters and state with `progress`, and the stage's
    /// own state when it has any (`stage-state.safetensors`: an EMA reference's weights).
    public static func save(in folder: URL, optimizer: AdamW, progress: RunProgress, stageState: [String: Tensor] = [:]) throws {
        let destination = folder.appendingPathComponent(String(format: "\(prefix)%08d", progress.step))
        try DirectoryCommit.write(destination) { temporary in
            let weights = Dictionary(uniqueKeysWithValues: optimizer.parameters.map { ($0.name, $0.tensor) })
            try writeSafetensors(tensors: weights, metadata: ["format": "pt"], to: temporary.appendingPathComponent("trainable.safetensors"))
            try writeSafetensors(tensors: optimizer.stateTensors(), metadata: ["format": "pt"],
                                 to: temporary.appendingPathComponent("optimizer.safetensors"))
            if !stageState.isEmpty {
                try writeSafetensors(tensors: stageState, metadata: ["format": "pt"], to: temporary.appendingPathComponent("stage-state.safetensors"))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try encoder.encode(progress), to: temporary.appendingPathComponent("progress.json"))
        }
        for older in try completeCheckpoints(in: folder) where older.lastPathComponent != destination.lastPathComponent {
            try? FileManager.default.removeItem(at: older)
        }
    }

    /// Whole checkpoint folders, oldest first.
    public static func completeCheckpoints(in folder: URL) throws -> [URL] {
        guard FileManager.default.fileExists(atPath: folder.path) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: folder.path)
            .filter { $0.hasPrefix(prefix) && Int($0.dropFirst(prefix.count)) != nil }
            .sorted()
            .map { folder.appendingPathComponent($0) }
    }

    /// The newest whole checkpoint, if any.
    public static func latest(in folder: URL) throws -> URL? { try completeCheckpoints(in: folder).last }

    /// The stage's own state saved with `checkpoint` (empty when it has none).
    public static func stageState(in checkpoint: URL) throws -> [String: Tensor] {
        let url = checkpoint.appendingPathComponent("stage-state.safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else { return [:] }
        let file = try SafetensorsCheckpoint(path: url.path)
        var tensors: [String: Tensor] = [:]
        for name in file.names { tensors[name] = try file.tensor(name) }
        return tensors
    }

    /// Restores weights and optimiser state from `checkpoint` into the optimiser's model and returns the progress.
    /// - Throws: ``CheckpointError`` or ``OptimizerStateError`` naming the file when it does not fit.
    public static func restore(_ checkpoint: URL, into model: Module, optimizer: AdamW) throws -> RunProgress {
        let progressURL = checkpoint.appendingPathComponent("progress.json")
        let progress: RunProgress
        do { progress = try JSONDecoder().decode(RunProgress.self, from: Data(contentsOf: progressURL)) } catch {
            throw CheckpointError(file: progressURL.path, reason: "not a readable run checkpoint (\(error))")
        }
        let weightsPath = checkpoint.appendingPathComponent("trainable.safetensors").path
        let weights = try SafetensorsCheckpoint(path: weightsPath)
        var tensors: [String: Tensor] = [:]
        for name in weights.names { tensors[name] = try weights.tensor(name) }
        let expected = Set(optimizer.parameters.map(\.name))
        guard Set(tensors.keys) == expected else {
            let missing = expected.subtracting(tensors.keys).sorted(), extra = Set(tensors.keys).subtracting(expected).sorted()
            throw CheckpointError(file: weightsPath, reason: "the trainable set differs from the stage's: missing \(missing.prefix(5)), unexpected \(extra.prefix(5))")
        }
        try model.updateParameters(tensors, source: weightsPath)
        let statePath = checkpoint.appendingPathComponent("optimizer.safetensors").path
        let state = try SafetensorsCheckpoint(path: statePath)
        var moments: [String: Tensor] = [:]
        for name in state.names { moments[name] = try state.tensor(name) }
        do { try optimizer.restoreState(tensors: moments, stepCounts: progress.optimizerStepCounts) } catch {
            throw CheckpointError(file: statePath, reason: "\(error)")
        }
        return progress
    }
}
