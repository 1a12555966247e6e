import ArgumentParser
import Foundation
import Media

/// `vlm bench images`: decode PNG and JPEG files repeatedly and report throughput, to compare with
/// Pillow through `Benchmarks/peer_images.py` (same files, same arithmetic, same JSON last line).
struct ImageBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images",
        abstract: "Time PNG and JPEG decoding (MB/s of decoded RGB and of compressed input).",
        discussion: """
            Each file is read into memory once, then decoded --iterations times after --warmup \
            untimed decodes. Decoded MB/s counts width·height·3 bytes per image (RGB-equivalent), \
            compressed MB/s counts the file's bytes. The last line is one JSON object.
            Compare: python Benchmarks/peer_images.py with the same arguments.
            """)

    @Argument(help: "PNG or JPEG files (default: ../shared/reference/images/*.png and Tests/Fixtures/media/jpeg_coffee_full_q90.jpg).")
    var files: [String] = []

    @Option(name: .shortAndLong, help: "Timed decodes of each file.")
    var iterations = 20

    @Option(help: "Untimed decodes of each file before timing.")
    var warmup = 2

    func validate() throws {
        guard iterations > 0 else { throw ValidationError("--iterations must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
    }

    func run() throws {
        let paths = files.isEmpty ? try Self.defaultFiles() : files
        var results = [[String: Any]]()
        var totalSeconds = 0.0, totalDecoded = 0.0, totalCompressed = 0.0
        for path in paths {
            let data = try readInput(path)
            var image = try decodeImage(data: data, source: path)
            for _ in 0 ..< warmup { image = try decodeImage(data: data, source: path) }
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0 ..< iterations { image = try decodeImage(data: data, source: path) }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let decodedBytes = Double(image.width * image.height * 3 * iterations)
            let compressedBytes = Double(data.count * iterations)
            totalSeconds += seconds
            totalDecoded += decodedBytes
            totalCompressed += compressedBytes
            let name = URL(fileURLWithPath: path).lastPathComponent
            let paddedName = name.count < 28 ? name + String(repeating: " ", count: 28 - name.count) : name
            print(paddedName + String(format: " %4dx%-4d %6.2f ms/decode  %7.1f MB/s decoded  %6.1f MB/s compressed",
                         image.width, image.height, 1000 * seconds / Double(iterations),
                         decodedBytes / seconds / 1e6, compressedBytes / seconds / 1e6))
            results.append(["file": name, "width": image.width, "height": image.height,
                            "ms_per_decode": 1000 * seconds / Double(iterations),
                            "decoded_mb_per_s": decodedBytes / seconds / 1e6,
                            "compressed_mb_per_s": compressedBytes / seconds / 1e6])
        }
        let summary: [String: Any] = [
            "tool": "vlmkit", "iterations": iterations, "files": results,
            "decoded_mb_per_s": totalDecoded / totalSeconds / 1e6,
            "compressed_mb_per_s": totalCompressed / totalSeconds / 1e6,
        ]
        let json = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
    }

    private static func defaultFiles() throws -> [String] {
        let directory = try RepositoryFiles.require("../shared/reference/images", option: "image files")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let pngs = names.filter { $0.hasSuffix(".png") }.sorted().map { "\(directory)/\($0)" }
        guard !pngs.isEmpty else { throw CommandFailure("no PNGs in \(directory); pass image files") }
        let jpeg = RepositoryFiles.find("Tests/Fixtures/media/jpeg_coffee_full_q90.jpg")
        return pngs + (jpeg.map { [$0] } ?? [])
    }
}
