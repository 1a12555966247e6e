import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

@main
struct VLM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vlm",
        abstract: "VLMKit: build, run and compare vision-language models on a CPU.",
        discussion: """
            Exit status: 0 success, 1 the work failed (a file, tensor, model or image was unusable; \
            the message names it), 64 the command line was wrong. '-' as a file means standard input \
            or output. See Docs/cli.md.
            """,
        version: vlmVersion,
        subcommands: [
            InspectCommand.self, TokenizeCommand.self, PreprocessCommand.self, ForwardCommand.self,
            GenerateCommand.self, AdaptersCommand.self, RunCommand.self, TrainCommand.self, CompareCommand.self, EvalCommand.self, RewardCommand.self, LlamaCommand.self, FuzzCommand.self, Bench.self,
            DataCommand.self,
            TokenizerCommand.self,
        ])

    /// Runs the command line — after making OpenBLAS use the CPU's best kernels (which may
    /// re-execute `vlm`) — removing this run's temporary files if it is interrupted.
    static func main() {
        OpenBLASStartup.run()
        InterruptCleanup.install()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
        exitIfStandardOutputFailed()
    }

    /// What `print` wrote sits in a buffer until exit; a full disk or a closed file loses it there
    /// unless it is flushed and checked here.
    static func exitIfStandardOutputFailed() {
        guard fflush(stdout) != 0 || ferror(stdout) != 0 else { return }
        let reason = String(cString: strerror(errno))
        FileHandle.standardError.write(Data("Error: cannot write to standard output (\(reason))\n".utf8))
        Glibc.exit(1)
    }

    /// `vlm` alone: the help, on standard error, and a usage error's status.
    func run() throws {
        FileHandle.standardError.write(Data((Self.helpMessage() + "\n").utf8))
        throw ExitCode(ExitCode.validationFailure.rawValue)
    }
}
