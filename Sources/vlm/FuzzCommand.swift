import ArgumentParser
import Checkpoint
import Foundation
import Media
import TensorCore

/// `vlm fuzz`: a mutation fuzzer for the parsers that read untrusted files — the safetensors header
/// parser and the PNG and JPEG decoders.
///
/// Each iteration takes a seed file, applies a few random mutations (byte flips, overwrites with
/// interesting values, truncation, duplicated or deleted runs, splices of another seed) and parses
/// the result in-process. A parser must either succeed or throw; anything else (a crash, a hang)
/// is a bug. Before each parse the input is written to `--crash-file`, so a run that dies leaves its
/// reproducer behind; iterations are deterministic in `--seed`.
struct FuzzCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Fuzz the safetensors, PNG and JPEG parsers with mutated seed files.")

    enum Target: String, ExpressibleByArgument, CaseIterable {
        case safetensors, png, jpeg
    }

    @Argument(help: "What to fuzz: \(Target.allCases.map(\.rawValue).joined(separator: ", ")).")
    var target: Target

    @Option(name: .customLong("seed-file"), help: "Seed inputs (default: the repository's fixtures for the target).")
    var seedFiles: [String] = []

    @Option(help: "Number of mutated inputs to try.")
    var iterations = 10_000

    @Option(help: "Random seed (runs are reproducible).")
    var seed: UInt64 = 1

    @Option(help: "Where the input under test is written before each parse.")
    var crashFile = "fuzz-current-input.bin"

    func run() throws {
        let seeds = try loadSeeds()
        var generator = RandomGenerator(seed: seed)
        var accepted = 0, rejected = 0
        let start = Date()
        for iteration in 0..<iterations {
            var input = seeds[Int(generator.next() % UInt64(seeds.count))]
            let mutations = 1 + Int(generator.next() % 4)
            for _ in 0..<mutations { mutate(&input, seeds: seeds, generator: &generator) }
            try writeCrashFile(input)
            if parse(input, name: "iteration \(iteration)") { accepted += 1 } else { rejected += 1 }
        }
        try? FileManager.default.removeItem(atPath: crashFile)
        print(String(format: "%@: %d inputs in %.1f s — %d parsed, %d rejected with an error, no crash",
                     target.rawValue, iterations, Date().timeIntervalSince(start), accepted, rejected))
    }

    /// Saves the input about to be parsed, so that a crash leaves its reproducer.
    private func writeCrashFile(_ input: [UInt8]) throws {
        do { try Data(input).write(to: URL(fileURLWithPath: crashFile)) } catch {
            throw CommandFailure("\(crashFile): cannot write the --crash-file (\((error as NSError).localizedFailureReason ?? "\(error)"))")
        }
    }

    /// Parses `bytes`; true when it was accepted, false when it threw (the expected outcomes).
    private func parse(_ bytes: [UInt8], name: String) -> Bool {
        switch target {
        case .safetensors:
            let storage = Storage(byteCount: bytes.count)
            bytes.withUnsafeBytes { storage.baseAddress.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
            guard let file = try? SafetensorsFile(contents: storage, path: name) else { return false }
            // Touch every tensor the header accepted: views must lie inside the file.
            for tensorName in file.names { _ = try? file.tensor(tensorName) }
            return true
        case .png, .jpeg:
            return bytes.withUnsafeBytes { (try? decodeImage(bytes: $0, source: name)) != nil }
        }
    }

    private func loadSeeds() throws -> [[UInt8]] {
        var paths = seedFiles
        if paths.isEmpty {
            let directory = try RepositoryFiles.require(target == .safetensors ? "Tests/Fixtures/checkpoint" : "Tests/Fixtures/media",
                                                        option: "--seed-file")
            let suffixes: [String] = target == .safetensors ? [".safetensors"] : target == .png ? [".png"] : [".jpg", ".jpeg"]
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            paths = names.filter { name in suffixes.contains { name.hasSuffix($0) } }.sorted().map { "\(directory)/\($0)" }
        }
        let seeds = try paths.map { [UInt8](try readInput($0)) }.filter { !$0.isEmpty }
        guard !seeds.isEmpty else {
            throw CommandFailure("no non-empty seed files for \(target.rawValue); pass --seed-file")
        }
        return seeds
    }

    private func mutate(_ input: inout [UInt8], seeds: [[UInt8]], generator: inout RandomGenerator) {
        guard !input.isEmpty else { input = [UInt8(truncatingIfNeeded: generator.next())]; return }
        func position() -> Int { Int(generator.next() % UInt64(input.count)) }
        switch generator.next() % 6 {
        case 0:  // flip one bit
            input[position()] ^= UInt8(1 << (generator.next() % 8))
        case 1:  // overwrite a byte with an interesting value
            let interesting: [UInt8] = [0, 1, 0x7F, 0x80, 0xFF, 0x22, 0x7B, 0x7D, 0x5B, 0x5D, 0x2C, 0x3A, 0x30, 0x39]
            input[position()] = interesting[Int(generator.next() % UInt64(interesting.count))]
        case 2:  // truncate
            input.removeSubrange(position()...)
        case 3:  // duplicate a run
            let start = position(), length = min(1 + Int(generator.next() % 64), input.count - start)
            input.insert(contentsOf: input[start..<(start + length)], at: position())
        case 4:  // delete a run
            let start = position(), length = min(1 + Int(generator.next() % 64), input.count - start)
            input.removeSubrange(start..<(start + length))
        default:  // splice the tail of another seed
            let other = seeds[Int(generator.next() % UInt64(seeds.count))]
            guard !other.isEmpty else { return }
            let cut = position(), from = Int(generator.next() % UInt64(other.count))
            input = Array(input[..<cut]) + other[from...]
        }
    }
}
