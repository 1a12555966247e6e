import ArgumentParser
import Checkpoint
import Collectives
import Foundation
import Training
#if canImport(Glibc)
import Glibc
#endif

/// `vlm train`: runs a staged recipe, each stage starting from the previous stage's output.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Run a staged training recipe (pretraining on pairs, SFT, …) from a base model.",
        discussion: """
            Every stage writes RUN/STAGE/model, a Hugging Face checkpoint that vlm forward, vlm generate and \
            transformers load. Running the same command again skips finished stages whose settings did not \
            change and resumes an unfinished one from its newest checkpoint, bit-identical to an uninterrupted \
            run. Ctrl-C writes a checkpoint and stops. See Docs/training.md.

            Data-parallel over MPI: mpirun -np N vlm train … (the same arguments on every rank; \
            the recipe's global batch keeps its meaning; rank 0 writes the run folder). See Docs/scaling.md.
            """)

    @OptionGroup var recipeArguments: RecipeArguments

    @Option(help: "The model the first stage starts from (an mllama checkpoint folder, e.g. from vlm adapters init).")
    var base: String

    @Option(help: "The run folder (created; reused to resume).")
    var out: String

    @Option(help: "Run only this stage (its input is the previous stage's output).")
    var stage: String?

    @Option(help: "Run from this stage on.")
    var fromStage: String?

    @Option(help: "Without a terminal, print a progress line every N steps.")
    var progressEvery = 10

    func validate() throws {
        if stage != nil && fromStage != nil { throw ValidationError("give --stage or --from-stage, not both") }
        guard progressEvery > 0 else { throw ValidationError("--progress-every must be positive") }
    }

    func run() throws {
        guard let group = try MPIProcessGroup.joinIfLaunched() else { return try train(parallelism: nil) }
        try TrainRanks.run(group: group) { try train(parallelism: $0) }
    }

    /// Runs the pipeline, alone or as one rank of a data-parallel job (then only rank 0 reports).
    func train(parallelism: DataParallelism?) throws {
        let quiet = !(parallelism?.isWriter ?? true)
        let recipe = try recipeArguments.load()
        let progress = ProgressPrinter(plainEvery: progressEvery)
        let pipeline = Pipeline(recipe: recipe, base: URL(fileURLWithPath: base), runFolder: URL(fileURLWithPath: out)) { stage, input in
            try TrainingEnvironment.make(stage: stage, recipe: recipe, input: input, base: URL(fileURLWithPath: base),
                                         group: parallelism?.group, runFolder: URL(fileURLWithPath: out),
                                         warn: { message in if !quiet { progress.handle(.warning(message)) } })
        }
        pipeline.onEvent = quiet ? { _ in } : progress.handle
        pipeline.parallelism = parallelism
        if parallelism == nil {   // under mpirun a signal stops every rank at once (TrainRanks)
            InterruptFlag.install()
            pipeline.shouldStop = { InterruptFlag.isSet }
        }
        do {
            let summaries = try pipeline.run(only: stage, from: fromStage)
            progress.finish()
            guard !quiet else { return }
            if summaries.isEmpty { print("Nothing to do: every selected stage is finished (\(out)).") }
            print("Run folder: \(out)")
        } catch let interrupted as TrainingInterrupted {
            progress.finish()
            FileHandle.standardError.write(Data("\(interrupted)\n".utf8))
            throw ExitCode(130)
        } catch let error as RecipeError {
            throw CommandFailure("\(error)")
        } catch let error as TrainingError {
            progress.finish()
            throw CommandFailure("\(error)")
        }
    }
}

/// Ctrl-C (SIGINT) or SIGTERM asks the run to stop at the next step boundary, after a checkpoint.
/// A second Ctrl-C stops at once (the last checkpoint is whole; the run resumes from it).
enum InterruptFlag {
    nonisolated(unsafe) private static var count: sig_atomic_t = 0

    static var isSet: Bool { count > 0 }

    /// Takes SIGINT and SIGTERM through ``InterruptCleanup``'s dispatch sources, the one path every
    /// signal of this process arrives by (a C handler beside them got some signals and not others).
    static func install() {
        InterruptCleanup.gracefulStop = { signalNumber in
            guard signalNumber == SIGINT || signalNumber == SIGTERM else { return false }
            InterruptFlag.count += 1
            if InterruptFlag.count > 1 {
                PendingTemporaries.removeAll()
                _exit(130)
            }
            return true
        }
    }
}

/// Turns training events into a live line on a terminal, or plain lines every N steps otherwise.
final class ProgressPrinter: @unchecked Sendable {
    let isTerminal = isatty(STDERR_FILENO) == 1
    let plainEvery: Int
    private var liveLineShown = false

    init(plainEvery: Int) { self.plainEvery = plainEvery }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

    private func line(_ text: String) {
        if liveLineShown { write("\r\u{1B}[K"); liveLineShown = false }
        write(text + "\n")
    }

    func handle(_ event: TrainingEvent) {
        switch event {
        case .stageStarted(let stage, let kind, let total, let resumed):
            line("== stage \(stage) (\(kind.rawValue)): \(total) steps" + (resumed.map { ", resuming at step \($0)" } ?? ""))
        case .stageSkipped(let stage, let output):
            line("== stage \(stage): finished earlier, skipped (\(output.path))")
        case .step(let stage, let step, let total, let report, let tokensPerSecond, _, let elapsed):
            let eta = elapsed / Double(max(step, 1)) * Double(total - step)
            var text = String(format: "%@ step %d/%d  loss %.4f  lr %.2e  %.0f tok/s  ETA %@", stage, step, total, report.loss,
                              report.learningRate, tokensPerSecond, Self.duration(eta))
            if report.communicationSeconds > 0 {
                text += String(format: "  compute %.2fs wait %.2fs comm %.2fs", report.forwardSeconds + report.backwardSeconds + report.optimizerSeconds,
                               report.rankWaitSeconds, report.communicationSeconds)
            }
            if isTerminal {
                write("\r\u{1B}[K" + text)
                liveLineShown = true
            } else if step % plainEvery == 0 || step == total {
                write(text + "\n")
            }
        case .evaluation(let stage, let step, let metrics):
            line("\(stage) step \(step) evaluation: " + metrics.sorted { $0.key < $1.key }
                .map { String(format: "%@ %.4g", $0.key, $0.value) }.joined(separator: ", "))
        case .checkpoint:
            break
        case .warning(let message):
            line("warning: \(message)")
        case .stageFinished(let summary):
            var text = String(format: "== stage %@ done: %d steps, loss %.4f → %.4f, %.0f tok/s, %@", summary.stage, summary.steps,
                              summary.firstLoss ?? .nan, summary.finalLoss ?? .nan, summary.tokensPerSecond, Self.duration(summary.seconds))
            if !summary.skippedSamples.isEmpty { text += ", skipped samples \(summary.skippedSamples)" }
            if let unchanged = summary.textOnlyLogitsUnchanged {
                text += unchanged ? ", text-only logits equal the base model's bit for bit" : ", TEXT-ONLY LOGITS DIFFER FROM THE BASE MODEL"
            }
            line(text + "\n   model: \(summary.output)")
        }
    }

    func finish() { if liveLineShown { write("\n"); liveLineShown = false } }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}
