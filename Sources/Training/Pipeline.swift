import Checkpoint
import Foundation

/// The state of a run folder, `run.json`: which stages finished, from which input, with which settings.
public struct RunRecord: Codable, Sendable, Equatable {
    public struct Stage: Codable, Sendable, Equatable {
        public var name: String
        public var digest: String
        /// The model folder the stage started from.
        public var input: String
        /// The stage's output model folder.
        public var output: String
        public var finished: Bool
    }

    public var recipe: String
    public var base: String
    public var stages: [Stage]
}

/// Runs a recipe's stages in order, each starting from the previous stage's output model (the
/// first from the base model), inside one run folder:
///
/// ```
/// RUN/run.json                   finished stages, their inputs and settings digests
/// RUN/STAGE/metrics.jsonl        one line per step (and per evaluation)
/// RUN/STAGE/checkpoints/step-N/  the newest whole run checkpoint (exact resume)
/// RUN/STAGE/model/               the stage's output, a Hugging Face checkpoint folder
/// RUN/STAGE/summary.json         what the stage did
/// ```
///
/// Running the same command again skips finished stages whose settings and input did not change
/// and resumes an unfinished one from its newest checkpoint.
public final class Pipeline {
    public let recipe: Recipe
    public let base: URL
    public let runFolder: URL
    /// Builds what a stage runs on, given the model folder it starts from.
    public let makeEnvironment: (StageSettings, URL) throws -> StageEnvironment
    public var onEvent: (TrainingEvent) -> Void = { _ in }
    public var shouldStop: () -> Bool = { false }
    /// The ranks the stages train over (nil: this process alone). Only rank 0 writes the run folder;
    /// every rank reads it, so on several hosts it must be a shared folder.
    public var parallelism: DataParallelism?

    public init(recipe: Recipe, base: URL, runFolder: URL,
                makeEnvironment: @escaping (StageSettings, URL) throws -> StageEnvironment) {
        self.recipe = recipe
        self.base = base.standardizedFileURL
        self.runFolder = runFolder.standardizedFileURL
        self.makeEnvironment = makeEnvironment
    }

    var recordURL: URL { runFolder.appendingPathComponent("run.json") }

    /// The stages to run: all, from one on (`from`), or only one (`only`).
    public func selectedStages(only: String? = nil, from: String? = nil) throws -> [StageSettings] {
        for name in [only, from].compactMap({ $0 }) where recipe.stage(named: name) == nil {
            throw RecipeError(file: recipe.file, field: "stage", reason: "no stage named '\(name)'; stages: \(recipe.stages.map(\.name).joined(separator: ", "))")
        }
        if let only { return recipe.stages.filter { $0.name == only } }
        if let from { return Array(recipe.stages.drop { $0.name != from }) }
        return recipe.stages
    }

    /// The model folder a stage starts from: its `input_stage`'s output, else the previous stage's, or the base model.
    public func input(of stage: StageSettings) -> URL {
        guard let index = recipe.stages.firstIndex(where: { $0.name == stage.name }),
              let source = recipe.stages.inputStageName(at: index) else { return base }
        return runFolder.appendingPathComponent(source).appendingPathComponent("model")
    }

    /// Runs the selected stages; returns the summaries of those that ran (skipped ones excluded).
    @discardableResult
    public func run(only: String? = nil, from: String? = nil) throws -> [StageSummary] {
        let writer = parallelism?.isWriter ?? true
        let selected = try selectedStages(only: only, from: from)
        try checkDatasetsExist(selected)
        if writer {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: runFolder.path, isDirectory: &isFolder), !isFolder.boolValue {
                throw TrainingError("\(runFolder.path) is a file; a run folder is a folder (give a new name or an earlier run's folder)")
            }
            try FileManager.default.createDirectory(at: runFolder, withIntermediateDirectories: true)
            // What writers killed mid-write left behind (a stage that is skipped below is not revisited).
            DirectoryCommit.removeStaleTemporaries(in: runFolder)
            for stage in recipe.stages {
                let folder = runFolder.appendingPathComponent(stage.name)
                DirectoryCommit.removeStaleTemporaries(in: folder)
                DirectoryCommit.removeStaleTemporaries(in: folder.appendingPathComponent("checkpoints"))
            }
        }
        try parallelism?.group.barrier()
        var record = try loadRecord()
        try parallelism?.group.barrier()   // every rank read the record before rank 0 changes it
        var summaries: [StageSummary] = []
        for stage in selected {
            let input = input(of: stage)
            let folder = runFolder.appendingPathComponent(stage.name)
            let output = folder.appendingPathComponent("model")
            if let done = record.stages.first(where: { $0.name == stage.name }), done.finished, done.digest == stage.digest,
               done.input == input.path, FileManager.default.fileExists(atPath: output.appendingPathComponent("config.json").path) {
                onEvent(.stageSkipped(stage: stage.name, output: output))
                continue
            }
            guard FileManager.default.fileExists(atPath: input.appendingPathComponent("config.json").path) else {
                throw TrainingError("stage \(stage.name) starts from \(input.path), which holds no model (run the earlier stages first)")
            }
            if writer, let previous = record.stages.first(where: { $0.name == stage.name }), previous.input != input.path {
                try? FileManager.default.removeItem(at: folder.appendingPathComponent("checkpoints"))
            }
            record.stages.removeAll { $0.name == stage.name }
            record.stages.append(RunRecord.Stage(name: stage.name, digest: stage.digest, input: input.path, output: output.path, finished: false))
            try saveRecord(record)

            let environment = Result { try makeEnvironment(stage, input) }
            if let parallelism {
                if stage.gradientAccumulation % parallelism.group.size != 0 {
                    onEvent(.warning("\(stage.name): gradient_accumulation \(stage.gradientAccumulation) is not a multiple of the \(parallelism.group.size) ranks: some ranks idle for part of every step"))
                }
                try StartupCheck.verify(stage: stage, fingerprint: StartupCheck.fingerprint(stage: stage, recipe: recipe, environment: environment),
                                        group: parallelism.group)
            }
            let runner = StageRunner(settings: stage, folder: folder, environment: try environment.get(),
                                     onEvent: onEvent, shouldStop: shouldStop)
            runner.parallelism = parallelism
            summaries.append(try runner.run())
            record.stages = record.stages.map { var entry = $0; if entry.name == stage.name { entry.finished = true }; return entry }
            // A later stage that started from an older output of this one must run again.
            if let index = recipe.stages.firstIndex(where: { $0.name == stage.name }) {
                let later = Set(recipe.stages[(index + 1)...].map(\.name))
                for name in later where writer { try? FileManager.default.removeItem(at: runFolder.appendingPathComponent(name).appendingPathComponent("checkpoints")) }
                record.stages = record.stages.map { var entry = $0; if later.contains(entry.name) { entry.finished = false }; return entry }
            }
            try saveRecord(record)
        }
        return summaries
    }

    /// A dataset file that is missing is named before any stage runs, not when its stage starts
    /// after the earlier ones have trained. (Shard patterns are expanded, and checked, by their stage.)
    func checkDatasetsExist(_ stages: [StageSettings]) throws {
        for stage in stages {
            for (field, specs) in [("datasets", stage.datasets), ("eval_datasets", stage.evalDatasets)] {
                for (index, spec) in specs.enumerated() where !spec.path.contains("{") {
                    let path = recipe.url(of: spec).path
                    guard !FileManager.default.fileExists(atPath: path) else { continue }
                    throw RecipeError(file: recipe.file, field: "\(stage.name).\(field)[\(index)]",
                                      reason: "\(spec.path): \(path) does not exist")
                }
            }
        }
    }

    func loadRecord() throws -> RunRecord {
        guard let data = FileManager.default.contents(atPath: recordURL.path) else {
            return RunRecord(recipe: recipe.file, base: base.path, stages: [])
        }
        do {
            let record = try JSONDecoder().decode(RunRecord.self, from: data)
            guard record.base == base.path else {
                throw TrainingError("\(runFolder.path) is a run from the base model \(record.base), not \(base.path); choose another --out")
            }
            return record
        } catch let error as TrainingError { throw error } catch {
            throw TrainingError("\(recordURL.path) is not a VLMKit run record (\(error)); choose another --out")
        }
    }

    func saveRecord(_ record: RunRecord) throws {
        guard parallelism?.isWriter ?? true else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(record), to: recordURL)
    }
}
