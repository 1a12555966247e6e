import Foundation
import Testing
import Tokenization
@testable import vlm

/// Runs `arguments` as the `vlm` command line, in-process.
private func run(_ arguments: [String]) throws {
    var command = try VLM.parseAsRoot(arguments)
    try command.run()
}

private func scratch() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("vlm-data-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite("vlm data synth and vlm tokenizer train")
struct DataCommandTests {
    @Test("vlm data synth writes every file with paths that resolve, refuses a non-empty folder, and --force replaces it")
    func synthWritesTheDataSet() throws {
        let root = try scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let out = root.appendingPathComponent("world")
        try run(["data", "synth", "--out", root.appendingPathComponent("nested/./twice/world").path, "--size", "tiny"])
        #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("nested/twice/world/world.json").path))
        try FileManager.default.removeItem(at: root.appendingPathComponent("nested"))
        try run(["data", "synth", "--out", out.path, "--size", "tiny", "--seed", "7", "--image-size", "32"])
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(names == ["corpus.txt", "images", "preferences-heldout.jsonl", "preferences.jsonl", "pretrain-hq.jsonl",
                          "pretrain-noisy.jsonl", "qa-heldout.jsonl", "qa-train.jsonl", "regions-heldout.jsonl", "regions.jsonl", "sft.json",
                          "world.json"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("images").path).count == 64 + 16)

        func lines(_ name: String) throws -> [[String: Any]] {
            try String(contentsOf: out.appendingPathComponent(name), encoding: .utf8).split(separator: "\n").map {
                try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            }
        }
        for name in ["pretrain-noisy.jsonl", "pretrain-hq.jsonl"] {
            for line in try lines(name) {
                #expect(Set(line.keys) == ["id", "image", "text"])
                #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(line["image"] as! String).path))
            }
        }
        for line in try lines("qa-heldout.jsonl") { #expect(Set(line.keys) == ["id", "image", "question", "answer", "type"]) }
        for line in try lines("preferences.jsonl") {
            #expect((line["images"] as? [String])?.count == 1)
            let prompt = try #require(line["prompt"] as? [[String: Any]])
            #expect(prompt.first?["role"] as? String == "user")
            #expect(((line["chosen"] as? [[String: Any]])?.first?["content"] as? [[String: Any]])?.first?["type"] as? String == "text")
        }
        let sft = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("sft.json"))) as? [[String: Any]])
        #expect(sft.count == 48 * 4)
        for sample in sft {
            let turns = try #require(sample["conversations"] as? [[String: String]])
            #expect(turns.first?["from"] == "human" && turns.first?["value"]?.hasPrefix("<image>\n") == true)
            #expect(turns.enumerated().allSatisfy { $0.element["from"] == ($0.offset % 2 == 0 ? "human" : "gpt") })
        }
        let world = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("world.json"))) as? [String: Any])
        #expect(world["seed"] as? Int == 7 && (world["scenes"] as? [Any])?.count == 64 + 16, "train, held-out and encoder-only scenes")

        let badNoise = errorDescription { try run(["data", "synth", "--out", out.path, "--noise", "loud=0.5"]) }
        #expect(badNoise?.contains("KIND must be") == true, "\(badNoise ?? "no error")")
        let refused = errorDescription { try run(["data", "synth", "--out", out.path, "--size", "tiny"]) }
        #expect(refused?.contains("not empty") == true, "\(refused ?? "no error")")
        let before = try Data(contentsOf: out.appendingPathComponent("world.json"))
        try run(["data", "synth", "--out", out.path, "--size", "tiny", "--seed", "8", "--force", "--noise", "boilerplate=1"])
        let noisy = try String(contentsOf: out.appendingPathComponent("pretrain-noisy.jsonl"), encoding: .utf8)
        let noisyWorld = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("world.json"))) as? [String: Any])
        #expect((noisyWorld["noise"] as? [String: Double])?["boilerplate"] == 1 && !noisy.isEmpty)
        #expect(try Data(contentsOf: out.appendingPathComponent("world.json")) != before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path) == ["world"], "no temporary folder is left behind")
    }

    @Test("vlm tokenizer train writes a tokenizer.json that VLMKit loads and that round-trips the corpus")
    func tokenizerTrain() throws {
        let root = try scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let corpus = root.appendingPathComponent("corpus.txt")
        let text = (0..<50).map { "User: How many red circles are there? (\($0))\nAssistant: There are \($0 % 5) red circles." }
            .joined(separator: "\n\n")
        try Data(text.utf8).write(to: corpus)
        let out = root.appendingPathComponent("tok")
        try run(["tokenizer", "train", "--corpus", corpus.path, "--vocab-size", "320", "--out", out.path])
        let tokenizer = try Tokenizer(contentsOf: out.appendingPathComponent("tokenizer.json"))
        #expect(tokenizer.vocabularySize == 320)
        #expect(tokenizer.decode(tokenizer.encode(text)) == text)
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("tokenizer_config.json").path))
        #expect(errorDescription { try run(["tokenizer", "train", "--corpus", corpus.path, "--vocab-size", "100", "--out", out.path]) } != nil)
    }
}

private func errorDescription(_ body: () throws -> Void) -> String? {
    do { try body() } catch { return "\(error)" }
    return nil
}
