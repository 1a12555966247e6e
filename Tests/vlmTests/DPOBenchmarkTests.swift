import Foundation
import Testing
@testable import vlm

@Suite("vlm bench dpo")
struct DPOBenchmarkTests {
    /// The built binary runs the bench on the tiny world checkpoint (2 pairs of 6 prompt and 4
    /// response tokens); its last line is JSON. The first step's loss is ln 2 exactly when the
    /// policy and the reference agree, so it checks that the reference is the policy's copy and the
    /// loss is the sigmoid DPO loss; the rates must follow from the step time and the counts.
    @Test("vlm bench dpo times a DPO step on a model folder and ends with JSON: time, rates, first loss ln 2, machine")
    func benchDPOOnAModelFolder() throws {
        let binary = builtVLM
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the release binary first (swift build -c release)")
        let process = Process()
        process.executableURL = binary
        process.arguments = ["bench", "dpo", "--model", TinyVisionSetup.vision.path, "--pairs", "2", "--prompt-tokens", "6",
                             "--response-tokens", "4", "--steps", "2"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "\(text)")
        let last = try #require(text.split(separator: "\n").last)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any], "\(last)")
        for key in ["step_ms", "cpu_ms", "pairs_per_s", "tokens_per_s", "peak_rss_mb", "forward_ms", "backward_ms", "optimizer_ms",
                    "first_loss", "first_logps_chosen_per_token", "cpu", "openblas_core", "threads"] {
            #expect(json[key] != nil, "no \(key) in \(last)")
        }
        let stepMilliseconds = try #require(json["step_ms"] as? Double)
        #expect(stepMilliseconds > 0)
        #expect(abs((json["pairs_per_s"] as? Double ?? 0) - 2 / (stepMilliseconds / 1e3)) < 1e-3 * (json["pairs_per_s"] as? Double ?? 1))
        #expect(abs((json["tokens_per_s"] as? Double ?? 0) - 4 * 10 / (stepMilliseconds / 1e3)) < 1e-3 * (json["tokens_per_s"] as? Double ?? 1))
        #expect(abs((json["first_loss"] as? Double ?? 0) - log(2)) < 1e-6, "policy = reference at the first step")
        #expect((json["first_logps_chosen_per_token"] as? Double ?? 0) < 0)
        #expect((json["peak_rss_mb"] as? Double ?? 0) > 0)
        #expect(json["pairs"] as? Int == 2 && json["prompt_tokens"] as? Int == 6 && json["response_tokens"] as? Int == 4)
        #expect(!(json["cpu"] as? String ?? "").isEmpty)
    }

    @Test("vlm bench dpo refuses a prompt with no room for the image token")
    func benchDPOValidation() {
        #expect(failure(["bench", "dpo", "--prompt-tokens", "1"])?.message.contains("--prompt-tokens must be at least 2") == true)
        #expect(failure(["bench", "dpo", "--pairs", "0"])?.message.contains("--pairs, --response-tokens and --steps must be positive") == true)
    }
}
