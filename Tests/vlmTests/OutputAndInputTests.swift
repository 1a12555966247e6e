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

@Suite("vlm: outputs through links, devices, pipes and '-'")
struct CommandOutputTests {
    @Test("tokenize --out through a symbolic link writes the link's target and keeps the link", .enabled(if: hasSharedTokenizer, sharedNote))
    func tokenizeThroughLink() throws {
        let scratch = try Scratch()
        try JSONEncoder().encode(["hi"]).write(to: URL(fileURLWithPath: scratch.path("in.json")))
        try Data("old".utf8).write(to: URL(fileURLWithPath: scratch.path("real.json")))
        try FileManager.default.createSymbolicLink(atPath: scratch.path("link.json"), withDestinationPath: "real.json")
        try runVLM(["tokenize", "--tokenizer", sharedTokenizer.path, "--input", scratch.path("in.json"), "--out", scratch.path("link.json")])
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: scratch.path("link.json")) == "real.json")
        let ids = try Tokenizer(contentsOf: sharedTokenizer).encode("hi")
        #expect(try String(contentsOfFile: scratch.path("real.json"), encoding: .utf8) == "[[\(ids.map(String.init).joined(separator: ","))]]\n")
        #expect(scratch.contents == ["in.json", "link.json", "real.json"])
    }

    @Test("forward --out through a symbolic link writes the logits into the target")
    func forwardThroughLink() throws {
        let scratch = try Scratch()
        try FileManager.default.createSymbolicLink(atPath: scratch.path("logits.safetensors"), withDestinationPath: scratch.path("real.safetensors"))
        try runVLM(["forward", "--model", llamaFixture.path, "--inputs", llamaFixture.appendingPathComponent("inputs.safetensors").path,
                 "--out", scratch.path("logits.safetensors")])
        #expect(try SafetensorsFile(path: scratch.path("real.safetensors")).names == ["logits"])
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: scratch.path("logits.safetensors"))) != nil)
    }

    @Test("'-' as an output is standard output, written directly; /dev/stdout is never replaced")
    func dashIsStandardOutput() throws {
        #expect(outputURL("-").path == "/dev/stdout")
        let file = try AtomicFile(destination: outputURL("-"))
        #expect(file.isDirect && file.temporaryPath == nil)
        file.discard()
    }

    @Test("tokenize --input reads a pipe (as /dev/stdin and process substitution are)", .enabled(if: hasSharedTokenizer, sharedNote))
    func inputFromPipe() throws {
        let scratch = try Scratch()
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        let json = Array(#"["hi", "there"]"#.utf8)
        #expect(write(ends[1], json, json.count) == json.count)
        close(ends[1])
        defer { close(ends[0]) }
        try runVLM(["tokenize", "--tokenizer", sharedTokenizer.path, "--input", "/dev/fd/\(ends[0])", "--out", scratch.path("ids.json")])
        #expect(try JSONDecoder().decode([[Int]].self, from: Data(contentsOf: URL(fileURLWithPath: scratch.path("ids.json")))).count == 2)
    }

    @Test("tokenize: a bad input file is a content error (status 1, no usage), an unreadable one names the reason")
    func tokenizeContentErrors() throws {
        let scratch = try Scratch()
        try Data("{}".utf8).write(to: URL(fileURLWithPath: scratch.path("in.json")))
        let tokenizer = scratch.url.appendingPathComponent("tokenizer.json")
        try writeByteTokenizer(to: tokenizer)
        let bad = failure(["tokenize", "--tokenizer", tokenizer.path, "--input", scratch.path("in.json"), "--out", scratch.path("o.json")])
        #expect(bad?.status == 1 && bad?.message.contains("expected a JSON array of strings") == true, "\(String(describing: bad))")
        #expect(bad?.message.contains("Usage") == false)
        let missing = failure(["tokenize", "--tokenizer", tokenizer.path, "--input", scratch.path("nope.json"), "--out", scratch.path("o.json")])
        #expect(missing?.status == 1 && missing?.message.contains("No such file") == true, "\(String(describing: missing))")
        #expect(missing?.message.contains("NSCocoaErrorDomain") == false)
    }
}

@Suite("vlm: plain messages for missing files and folders")
struct MissingInputTests {
    @Test("A folder given as a file, a missing file and a file given as a model are named plainly, without Foundation's codes")
    func plainMessages() throws {
        let scratch = try Scratch()
        try Data("[]".utf8).write(to: URL(fileURLWithPath: scratch.path("t.json")))
        let cases: [([String], String)] = [
            (["tokenize", "--tokenizer", scratch.url.path, "--input", scratch.path("t.json"), "--out", "-"], "is a folder, not a file"),
            (["tokenize", "--tokenizer", scratch.path("none.json"), "--input", scratch.path("t.json"), "--out", "-"], "No such file"),
            (["generate", "--model", scratch.path("t.json"), "--prompt", "hi"], "not a folder"),
            (["generate", "--model", scratch.url.path, "--prompt", "hi"], "config.json: No such file"),
            (["preprocess", "--model", Fixtures.url("mllama/processor").path, "--image", scratch.url.path, "--out", "-"], "is a folder"),
        ]
        for (arguments, expected) in cases {
            let result = failure(arguments)
            #expect(result?.status == 1 && result?.message.contains(expected) == true && result?.message.contains("NSCocoaErrorDomain") == false,
                    "\(arguments.prefix(2)): \(String(describing: result))")
        }
    }
}
