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

/// Parses `arguments` as the `vlm` command line and runs the chosen subcommand, as the executable would.
private func run(_ arguments: [String]) throws {
    var command = try VLM.parseAsRoot(arguments)
    try command.run()
}

/// The message `vlm` would print for the error `arguments` end in (nil when they succeed), and the exit status.
private func failure(_ arguments: [String]) -> (message: String, status: Int32)? {
    do { try run(arguments) } catch {
        return (VLM.message(for: error), VLM.exitCode(for: error).rawValue)
    }
    return nil
}

/// A scratch folder removed when the test ends.
private final class Scratch {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("vlm-cli-defects-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    var contents: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted() }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// The PID of a process that has exited (for stale temporaries).
private func deadPID() throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/true")
    try process.run()
    process.waitUntilExit()
    return process.processIdentifier
}

/// A byte-level tokenizer.json whose 256 tokens are the 256 bytes (ids 0–255), with the Llama 3
/// pre-tokenizer: it fits the tiny test checkpoints' 256-token vocabulary.
private func writeByteTokenizer(to url: URL, specials: [String: Int] = [:], skipping reserved: Set<Int> = []) throws {
    var vocab: [String: Int] = [:]
    var next = 0
    for byte in 0..<256 {
        while reserved.contains(next) || specials.values.contains(next) { next += 1 }
        vocab[String(Character(Unicode.Scalar(ByteLevelAlphabet.scalarValues[byte])!))] = next
        next += 1
    }
    let json: [String: Any] = [
        "normalizer": NSNull(), "added_tokens": specials.map { ["id": $0.value, "content": $0.key, "special": true] },
        "pre_tokenizer": ["type": "Sequence", "pretokenizers": [
            ["type": "Split", "pattern": ["Regex": Llama3PreTokenizer.pattern], "behavior": "Isolated", "invert": false],
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false]]],
        "model": ["type": "BPE", "vocab": vocab, "merges": [String](), "ignore_merges": true],
    ]
    try JSONSerialization.data(withJSONObject: json).write(to: url)
}

/// A copy of a fixture checkpoint folder (config, generation config, weights) in `scratch`.
private func copyFixture(_ name: String, to destination: URL) throws {
    try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
    for file in ["config.json", "generation_config.json", "model.safetensors"] {
        try FileManager.default.copyItem(at: Fixtures.url(name).appendingPathComponent(file),
                                         to: destination.appendingPathComponent(file))
    }
}

private let llamaFixture = Fixtures.url("llama/gqa2_untied_padded")
private let mllamaFixture = Fixtures.url("mllama/tiny_single_image_56")
private let sharedTokenizer = Fixtures.sharedReference("llama3-tokenizer/tokenizer.model")
private let hasSharedTokenizer = Fixtures.hasSharedReference("llama3-tokenizer/tokenizer.model")
private let sharedNote = Comment(rawValue: Fixtures.sharedReferenceNote("llama3-tokenizer/tokenizer.model"))

@Suite("vlm: outputs through links, devices, pipes and '-'")
struct CommandOutputTests {
    @Test("tokenize --out through a symbolic link writes the link's target and keeps the link", .enabled(if: hasSharedTokenizer, sharedNote))
    func tokenizeThroughLink() throws {
        let scratch = try Scratch()
        try JSONEncoder().encode(["hi"]).write(to: URL(fileURLWithPath: scratch.path("in.json")))
        try Data("old".utf8).write(to: URL(fileURLWithPath: scratch.path("real.json")))
        try FileManager.default.createSymbolicLink(atPath: scratch.path("link.json"), withDestinationPath: "real.json")
        try run(["tokenize", "--tokenizer", sharedTokenizer.path, "--input", scratch.path("in.json"), "--out", scratch.path("link.json")])
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: scratch.path("link.json")) == "real.json")
        let ids = try Tokenizer(contentsOf: sharedTokenizer).encode("hi")
        #expect(try String(contentsOfFile: scratch.path("real.json"), encoding: .utf8) == "[[\(ids.map(String.init).joined(separator: ","))]]\n")
        #expect(scratch.contents == ["in.json", "link.json", "real.json"])
    }

    @Test("forward --out through a symbolic link writes the logits into the target")
    func forwardThroughLink() throws {
        let scratch = try Scratch()
        try FileManager.default.createSymbolicLink(atPath: scratch.path("logits.safetensors"), withDestinationPath: scratch.path("real.safetensors"))
        try run(["forward", "--model", llamaFixture.path, "--inputs", llamaFixture.appendingPathComponent("inputs.safetensors").path,
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
        try run(["tokenize", "--tokenizer", sharedTokenizer.path, "--input", "/dev/fd/\(ends[0])", "--out", scratch.path("ids.json")])
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

@Suite("vlm adapters init: inputs and existing outputs are safe")
struct AdaptersInitSafetyTests {
    let layout = Fixtures.repositoryRoot.appendingPathComponent("adapters/tiny.yaml").path

    @Test("--out equal to the text model (or holding it) is refused, and the text model is untouched")
    func outIsInput() throws {
        let scratch = try Scratch()
        let llama = scratch.url.appendingPathComponent("llama")
        try copyFixture("llama/gqa2_untied_padded", to: llama)
        let before = try Data(contentsOf: llama.appendingPathComponent("model.safetensors"))
        for out in [llama.path, llama.path + "/", scratch.url.path, llama.path + "/../llama"] {
            let result = failure(["adapters", "init", "--text-model", llama.path, "--adapter", layout, "--out", out, "--force"])
            #expect(result?.status == 1 && result?.message.contains("text model") == true, "\(out): \(String(describing: result))")
        }
        #expect(try Data(contentsOf: llama.appendingPathComponent("model.safetensors")) == before)
        #expect(try LlamaConfig.load(from: llama.appendingPathComponent("config.json")).modelType == "llama")
        #expect(scratch.contents == ["llama"])
    }

    @Test("An existing --out is refused without --force and replaced whole with it")
    func existingOut() throws {
        let scratch = try Scratch()
        let out = scratch.url.appendingPathComponent("vision")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: out.appendingPathComponent("notes.txt"))
        let refused = failure(["adapters", "init", "--text-model", llamaFixture.path, "--adapter", layout, "--out", out.path])
        #expect(refused?.message.contains("--force") == true, "\(String(describing: refused))")
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("notes.txt").path))

        try run(["adapters", "init", "--text-model", llamaFixture.path, "--adapter", layout, "--out", out.path, "--force"])
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(files.contains("model.safetensors") && files.contains("config.json") && !files.contains("notes.txt"))
        #expect(scratch.contents == ["vision"], "no temporary folder is left beside the output")
        _ = try MllamaForConditionalGeneration.load(directory: out)
    }

    @Test("A run that fails midway leaves no output folder and no temporaries; stale ones of a killed run are removed")
    func failureLeavesNothing() throws {
        let scratch = try Scratch()
        let llama = scratch.url.appendingPathComponent("llama")
        try copyFixture("llama/gqa2_untied_padded", to: llama)
        // A tokenizer.json that cannot be read as a file: copying it fails after the weights are written.
        try FileManager.default.createDirectory(at: llama.appendingPathComponent("tokenizer.json"), withIntermediateDirectories: true)
        let stale = scratch.url.appendingPathComponent(".vision.tmp-\(try deadPID())-AbCdEf")
        try FileManager.default.createDirectory(at: stale, withIntermediateDirectories: true)
        try Data(repeating: 1, count: 1000).write(to: stale.appendingPathComponent("model.safetensors"))
        let out = scratch.url.appendingPathComponent("vision")
        #expect(failure(["adapters", "init", "--text-model", llama.path, "--adapter", layout, "--out", out.path]) != nil)
        #expect(scratch.contents == ["llama"], "\(scratch.contents)")
    }

    @Test("Unknown keys in an adapter layout are errors naming them; decoding errors name the field")
    func layoutKeys() throws {
        let scratch = try Scratch()
        let text = try String(contentsOfFile: layout, encoding: .utf8)
        let misspelled = scratch.url.appendingPathComponent("bad.yaml")
        try text.replacingOccurrences(of: "initializer_range: 0.02", with: "initializer_rang: 5.0")
            .replacingOccurrences(of: "  patch_size: 14", with: "  patch_size: 14\n  pach_size: 7").write(to: misspelled, atomically: true, encoding: .utf8)
        let unknown = failure(["adapters", "init", "--text-model", llamaFixture.path, "--adapter", misspelled.path, "--out", scratch.path("o")])
        #expect(unknown?.message.contains("'initializer_rang'") == true && unknown?.message.contains("'vision.pach_size'") == true,
                "\(String(describing: unknown))")
        let missing = scratch.url.appendingPathComponent("missing.yaml")
        try "cross_attention:\n  every: 2\n".write(to: missing, atomically: true, encoding: .utf8)
        let message = failure(["adapters", "init", "--text-model", llamaFixture.path, "--adapter", missing.path, "--out", scratch.path("o")])
        #expect(message?.message.contains("missing key 'vision'") == true && message?.message.contains("keyNotFound") == false,
                "\(String(describing: message))")
        #expect(scratch.contents == ["bad.yaml", "missing.yaml"])
        for name in try FileManager.default.contentsOfDirectory(atPath: Fixtures.repositoryRoot.appendingPathComponent("adapters").path)
        where name.hasSuffix(".yaml") {
            _ = try loadAdapterLayout(path: Fixtures.repositoryRoot.appendingPathComponent("adapters/\(name)").path)
        }
    }
}

@Suite("vlm generate: messages instead of crashes or silence")
struct GenerateInputTests {
    @Test("A tokenizer whose ids exceed the model's vocabulary is an error, not a crash", .enabled(if: hasSharedTokenizer, sharedNote))
    func idsPastVocabulary() {
        let result = failure(["generate", "--model", llamaFixture.path, "--tokenizer", sharedTokenizer.path, "--prompt", "hi"])
        #expect(result?.status == 1 && result?.message.contains("outside the model's vocabulary of 256") == true, "\(String(describing: result))")
    }

    @Test("--chat on a Llama 3.1 text model does not ask for <|image|>", .enabled(if: hasSharedTokenizer, sharedNote))
    func chatOnTextModel() {
        let result = failure(["generate", "--model", llamaFixture.path, "--tokenizer", sharedTokenizer.path, "--chat", "--prompt", "Hello"])
        #expect(result?.message.contains("<|image|>") == false, "\(String(describing: result))")
        #expect(result?.message.contains("vocabulary") == true, "the tiny model's only complaint is its vocabulary: \(String(describing: result))")
    }

    @Test("Bad numbers, <|image|> without --image and over-long prompts are refused; a huge --max-tokens stops at the maximum length")
    func refusedInputs() throws {
        let scratch = try Scratch()
        let model = scratch.url.appendingPathComponent("llama")
        try copyFixture("llama/gqa2_untied_padded", to: model)
        try writeByteTokenizer(to: model.appendingPathComponent("tokenizer.json"))
        let base = ["generate", "--model", model.path]

        let topK = failure(base + ["--prompt", "hi", "--top-k=-5"])
        #expect(topK?.status == 64 && topK?.message.contains("--top-k") == true, "\(String(describing: topK))")
        let maxTokens = failure(base + ["--prompt", "hi", "--max-tokens", "-3"])
        #expect(maxTokens?.status == 64 && maxTokens?.message.contains("--max-tokens must be positive") == true, "\(String(describing: maxTokens))")
        let image = failure(base + ["--prompt", "<|image|>What is this?"])
        #expect(image?.status == 1 && image?.message.contains("no --image") == true, "\(String(describing: image))")
        let long = failure(base + ["--prompt", String(repeating: "x ", count: 200)])
        #expect(long?.status == 1 && long?.message.contains("at most 256") == true, "\(String(describing: long))")

        // 250 single-byte tokens + BOS leave 5 positions: a billion new tokens must not be allocated up front.
        try run(base + ["--prompt", String(repeating: "x", count: 250), "--max-tokens", "1000000000", "--temperature", "1", "--seed", "3"])
    }
}

@Suite("vlm generate with images")
struct GenerateImageTests {
    @Test("A preprocessor_config.json whose tiles do not fit the model is an error naming it; a matching one generates")
    func processorMustFitModel() throws {
        let scratch = try Scratch()
        let model = scratch.url.appendingPathComponent("mllama")
        try copyFixture("mllama/tiny_single_image_56", to: model)
        // ASCII keeps its ids (below the 128-token vocabulary); 128 is <|image|>.
        try writeByteTokenizer(to: model.appendingPathComponent("tokenizer.json"), specials: ["<|begin_of_text|>": 129], skipping: [128])
        let processor = model.appendingPathComponent("preprocessor_config.json")
        try FileManager.default.copyItem(at: Fixtures.url("mllama/processor/preprocessor_config_560.json"), to: processor)
        let arguments = ["generate", "--model", model.path, "--image", Fixtures.url("mllama/processor/coffee_crop_120x50.png").path,
                         "--prompt", "hi", "--max-tokens", "2"]
        let mismatch = failure(arguments)
        #expect(mismatch?.status == 1 && mismatch?.message.contains("preprocessor_config.json") == true
                && mismatch?.message.contains("pixel_values must be") == true, "\(String(describing: mismatch))")
        try FileManager.default.removeItem(at: processor)
        try FileManager.default.copyItem(at: Fixtures.url("mllama/processor/preprocessor_config.json"), to: processor)
        try run(arguments)
    }
}

@Suite("vlm forward: every input tensor is used or refused")
struct ForwardInputTests {
    fileprivate func inputs(_ change: (inout [String: Tensor]) -> Void, in scratch: Scratch, fixture: URL = mllamaFixture) throws -> String {
        let file = try SafetensorsFile(path: fixture.appendingPathComponent("inputs.safetensors").path)
        var tensors: [String: Tensor] = [:]
        for name in file.names { tensors[name] = try file.tensor(name).copy() }
        change(&tensors)
        let path = scratch.path("inputs-\(UUID().uuidString).safetensors")
        try writeSafetensors(tensors: tensors, to: URL(fileURLWithPath: path))
        return path
    }

    fileprivate func forward(_ inputs: String, scratch: Scratch, model: URL = mllamaFixture) -> String? {
        failure(["forward", "--model", model.path, "--inputs", inputs, "--out", scratch.path("out.safetensors")])?.message
    }

    @Test("An unknown tensor (a misspelled name) is an error naming it")
    func unknownTensor() throws {
        let scratch = try Scratch()
        let misspelled = try inputs({ $0["cross_attn_mask"] = $0.removeValue(forKey: "cross_attention_mask") }, in: scratch)
        #expect(forward(misspelled, scratch: scratch)?.contains("'cross_attn_mask'") == true)
        let extra = try inputs({ $0["labels"] = $0["input_ids"] }, in: scratch, fixture: llamaFixture)
        #expect(forward(extra, scratch: scratch, model: llamaFixture)?.contains("'labels'") == true)
    }

    @Test("Wrong pixel dtypes, tile sizes, aspect-ratio ids and mask shapes are messages naming the tensor")
    func badImageInputs() throws {
        let scratch = try Scratch()
        let cases: [(String, (inout [String: Tensor]) -> Void)] = [
            ("pixel_values must be float32", { $0["pixel_values"] = $0["pixel_values"]!.converted(to: .float64) }),
            ("pixel_values must be float32", { $0["pixel_values"] = $0["pixel_values"]!.converted(to: .float16) }),
            ("pixel_values must be [B, N, tiles, C, H, W]", { $0["pixel_values"] = Tensor(zeros: [1, 1, 4, 3, 14, 14]) }),
            ("aspect_ratio_ids holds 9", { $0["aspect_ratio_ids"] = Tensor(indices: [9], shape: [1, 1]) }),
            ("aspect_ratio_ids holds -1", { $0["aspect_ratio_ids"] = Tensor(indices: [-1], shape: [1, 1]) }),
            ("cross_attention_mask must be [B, T, N, tiles] = [1, 10, 1, 4]", { $0["cross_attention_mask"] = Tensor(indices: Array(repeating: 1, count: 8), shape: [1, 2, 1, 4]) }),
            ("aspect_ratio_mask must be", { $0["aspect_ratio_mask"] = Tensor(indices: [1, 1], shape: [1, 1, 2]) }),
            ("given without pixel_values", { $0["pixel_values"] = nil }),
        ]
        for (expected, change) in cases {
            let message = forward(try inputs(change, in: scratch), scratch: scratch)
            #expect(message?.contains(expected) == true, "expected '\(expected)': \(message ?? "no error")")
        }
        #expect(!scratch.contents.contains("out.safetensors"))
    }
}

@Suite("vlm inspect, exit codes and conventions")
struct CommandConventionTests {
    @Test("inspect DIR reads the model's weights only, not inputs or logits beside them")
    func inspectFolder() throws {
        try run(["inspect", llamaFixture.path, "--summary"])
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
            try run([])
            Issue.record("vlm with no arguments must fail")
        } catch {
            #expect(VLM.exitCode(for: error).rawValue == 64)
        }
        do {
            try run(["--version"])
            Issue.record("--version must print and exit")
        } catch {
            #expect(VLM.exitCode(for: error).rawValue == 0 && VLM.message(for: error) == vlmVersion)
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
        try run(["bench", "checkpoint", "--large-mb", "1", "--small-mb", "1", "--repeats", "1", "--directory", scratch.url.path])
        #expect(scratch.contents.isEmpty, "\(scratch.contents)")
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

@Suite("vlm generate streams every byte")
struct GenerateStreamingTests {
    @Test("Sampled text from a model with the real Llama 3 vocabulary streams byte-for-byte what decoding it at once gives",
          .enabled(if: hasSharedTokenizer, sharedNote))
    func streamedEqualsDecoded() throws {
        let tokenizer = try Tokenizer(contentsOf: sharedTokenizer)
        let config = LlamaConfig(vocabSize: tokenizer.vocabularySize, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 1,
                                 numAttentionHeads: 2, maxPositionEmbeddings: 1024, bosTokenId: 128_000, eosTokenIds: [128_001])
        let model = LlamaForCausalLM(config: config, factory: ParameterFactory(.random(seed: 7, standardDeviation: 1.0)))
        let prompt = [128_000] + tokenizer.encode("नमस्ते दुनिया, สวัสดีชาวโลก")
        var streamed: [UInt8] = [], writes: [[UInt8]] = []
        let produced = streamGeneration(model, prompt: prompt, tokenizer: tokenizer, stop: [], pad: 0,
                                        options: SamplingOptions(temperature: 1, seed: 11), maxNewTokens: 600) {
            writes.append($0)
            streamed += $0
        }
        #expect(produced.count == 600)
        let full = Array(tokenizer.decode(produced).utf8)
        #expect(streamed.count == full.count, "streamed \(streamed.count) of \(full.count) bytes")
        #expect(streamed == full)
        #expect(writes.allSatisfy { String(validating: $0, as: UTF8.self) != nil })
        // The sample holds tokens that are pieces of characters, so the test exercises holding back.
        #expect(produced.contains { tokenizer.decode([$0]).unicodeScalars.contains("\u{FFFD}") })
    }
}
