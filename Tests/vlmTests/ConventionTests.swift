import ArgumentParser
import Checkpoint
import Layers
import Foundation
import Models
import Testing
import TensorCore
@testable import Tokenization
import _TestSupport
@testable import vlm
#if canImport(Glibc)
import Glibc
#endif

@Suite("vlm inspect, exit codes and conventions")
struct CommandConventionTests {
    @Test("inspect DIR reads the model's weights only, not inputs or logits beside them")
    func inspectFolder() throws {
        try runVLM(["inspect", llamaFixture.path, "--summary"])
        let message = failure(["inspect", Fixtures.repositoryRoot.appendingPathComponent("README.md").path])
        #expect(message?.message.contains("not a safetensors file") == true, "\(String(describing: message))")
    }

    @Test("Exit status: 0 ok, 1 content errors, 64 usage; no arguments print help and fail; --version")
    func exitCodes() throws {
        #expect(VLM.exitCode(for: CommandFailure("x")).rawValue == 1)
        #expect(VLM.exitCode(for: CheckpointError(file: "f", reason: "r")).rawValue == 1)
        #expect(VLM.message(for: CheckpointError(file: "f", reason: "r")) == "f: r")
        #expect(VLM.exitCode(for: ValidationError("x")).rawValue == 64)
        do {
            try runVLM([])
            Issue.record("vlm with no arguments must fail")
        } catch {
            #expect(VLM.exitCode(for: error).rawValue == 64)
        }
        do {
            try runVLM(["--version"])
            Issue.record("--version must print and exit")
        } catch {
            #expect(VLM.exitCode(for: error).rawValue == 0 && VLM.message(for: error) == vlmVersion)
        }
    }

    @Test("Content errors of bench images, bench tokenizer and fuzz exit 1 without the usage")
    func contentErrorsAreNotUsageErrors() throws {
        let scratch = try Scratch()
        try Data().write(to: URL(fileURLWithPath: scratch.path("empty.png")))
        for arguments in [["bench", "images", scratch.path("none.png")],
                          ["fuzz", "png", "--seed-file", scratch.path("empty.png"), "--iterations", "1"],
                          ["bench", "tokenizer", "--tokenizer", scratch.path("none.model"), "--corpus", scratch.path("none.zst")]] {
            let result = failure(arguments)
            #expect(result?.status == 1 && result?.message.contains("Usage") == false, "\(arguments): \(String(describing: result))")
        }
    }

    @Test("Help texts name no machine-specific path")
    func helpHasNoLocalPaths() throws {
        func all(_ command: ParsableCommand.Type) -> [ParsableCommand.Type] {
            [command] + command.configuration.subcommands.flatMap { all($0) }
        }
        let commands = all(VLM.self)
        #expect(commands.count > 15)
        for command in commands {
            let text = VLM.helpMessage(for: command)
            for local in ["/work/", "/tmp/", ".peer", "/home/", "/root/"] {
                #expect(!text.contains(local), "\(command) --help names \(local)")
            }
        }
    }

    @Test("Docs and the README name no machine-specific path")
    func docsHaveNoLocalPaths() throws {
        let root = Fixtures.repositoryRoot
        let docs = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("Docs").path)
            .filter { $0.hasSuffix(".md") }.map { "Docs/" + $0 } + ["README.md"]
        for doc in docs {
            let text = try String(contentsOf: root.appendingPathComponent(doc), encoding: .utf8)
            for local in ["/work/", "/tmp/vlmkit", ".peer/", "/home/", "/root/"] {
                #expect(!text.contains(local), "\(doc) names \(local)")
            }
        }
    }

    @Test("bench checkpoint leaves no temporaries and removes those of a killed run")
    func benchCheckpointTemporaries() throws {
        let scratch = try Scratch()
        let stale = scratch.url.appendingPathComponent(".vlm-bench-checkpoint.tmp-\(try deadPID())-XyZ123")
        try FileManager.default.createDirectory(at: stale, withIntermediateDirectories: true)
        try Data(repeating: 0, count: 4096).write(to: stale.appendingPathComponent("bench-1MB.safetensors"))
        try runVLM(["bench", "checkpoint", "--large-mb", "1", "--small-mb", "1", "--repeats", "1", "--directory", scratch.url.path])
        #expect(scratch.contents.isEmpty, "\(scratch.contents)")
    }
}

@Suite("vlm bench: defaults that do not depend on the current folder")
struct BenchDefaultTests {
    @Test("Default inputs are found from a folder outside the clone through the executable's folder, or not at all")
    func defaultsFoundFromAnywhere() throws {
        let scratch = try Scratch()
        let executableFolder = Fixtures.repositoryRoot.appendingPathComponent(".build/release")
        let corpus = RepositoryFiles.find("Tests/Fixtures/tokenizer/corpus.json.zst", startingFrom: [scratch.url, executableFolder])
        #expect(corpus == Fixtures.url("tokenizer/corpus.json.zst").standardizedFileURL.path)
        #expect(RepositoryFiles.find("Tests/Fixtures/tokenizer/corpus.json.zst", startingFrom: [scratch.url]) == nil)
        if Fixtures.hasSharedReference("images") {
            #expect(RepositoryFiles.find("../shared/reference/images", startingFrom: [scratch.url, executableFolder]) != nil)
        }
    }

    @Test("bench text-generation needs --model and says how to make one")
    func textGenerationNeedsModel() {
        let result = failure(["bench", "text-generation"])
        #expect(result?.status == 64 && result?.message.contains("--model") == true, "\(String(describing: result))")
        #expect(VLM.helpMessage(for: TextGenerationBenchmark.self).contains("peer_llama_generate.py --model DIR"))
    }

    @Test("--special with an id another special token has names both tokens", .enabled(if: hasSharedTokenizer, sharedNote))
    func specialCollision() throws {
        let scratch = try Scratch()
        try Data(#"["a"]"#.utf8).write(to: URL(fileURLWithPath: scratch.path("t.json")))
        let result = failure(["tokenize", "--tokenizer", sharedTokenizer.path, "--special", "<|image|>=128000",
                              "--input", scratch.path("t.json"), "--out", scratch.path("o.json")])
        #expect(result?.message.contains("<|begin_of_text|> and <|image|> both have id 128000") == true, "\(String(describing: result))")
    }
}
