import Checkpoint
import Foundation
import Media
import Processing
import Tokenization
@testable import Training

/// Small, offline building blocks for the data tests: a byte-level tokenizer (each byte its own
/// token, id = byte value, plus Llama 3's special tokens and `<|image|>` = 128256), an image
/// processor with 16-pixel tiles, and a temporary directory to write datasets into.
enum DataTestSupport {
    static let tokenizer: Tokenizer = {
        let lines = (0 ..< 256).map { Data([UInt8($0)]).base64EncodedString() + " \($0)" }
        return try! Tokenizer(tiktokenModel: Array(lines.joined(separator: "\n").utf8), source: "bytes.model",
                              extraSpecialTokens: ["<|image|>": 128256])
    }()

    static let imageToken = 128256, beginOfText = 128000, endOfText = 128001, endOfTurn = 128009, pad = 128004

    static func processor(tileSize: Int = 16, maxImageTiles: Int = 2) throws -> MllamaProcessor {
        let config = MllamaImageProcessorConfig(size: .init(height: tileSize, width: tileSize), resample: 2,
                                                imageMean: [0.5, 0.5, 0.5], imageStd: [0.5, 0.5, 0.5],
                                                maxImageTiles: maxImageTiles)
        return try MllamaProcessor(imageProcessor: MllamaImageProcessor(config: config), tokenizer: tokenizer)
    }

    static func encoder(maxLength: Int = 512, maxImages: Int = 4) throws -> SampleEncoder {
        try SampleEncoder(processor: processor(), maxLength: maxLength, maxImages: maxImages)
    }

    /// The byte tokens of `text`.
    static func bytes(_ text: String) -> [Int] { Array(text.utf8).map(Int.init) }
}

/// A fresh temporary directory, removed when the value is released.
final class TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("vlmkit-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        try write(name, Data(text.utf8))
    }

    @discardableResult
    func write(_ name: String, _ data: Data) throws -> String {
        let target = url.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: target)
        return target.path
    }

    /// A solid-colour PNG.
    @discardableResult
    func writePNG(_ name: String, width: Int = 20, height: Int = 12, color: [UInt8] = [200, 30, 30]) throws -> String {
        try write(name, pngBytes(width: width, height: height, color: color))
    }
}

func pngBytes(width: Int = 20, height: Int = 12, color: [UInt8] = [200, 30, 30]) throws -> Data {
    let pixels = (0 ..< width * height).flatMap { _ in color }
    return try PNGEncoder.encode(Image(width: width, height: height, layout: .rgb, pixels: pixels))
}

/// Writes a POSIX ustar archive the way Python's `tarfile` does (header, data padded to 512 bytes,
/// two zero blocks at the end), so the reader is tested against the format rather than against itself.
func ustarArchive(_ members: [(name: String, bytes: [UInt8])]) -> Data {
    var archive = Data()
    for (name, bytes) in members {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int) { for (i, byte) in text.utf8.enumerated() { header[offset + i] = byte } }
        put(name, at: 0)
        put("0000644\0", at: 100)
        put("0001750\0", at: 108)
        put("0001750\0", at: 116)
        put(String(format: "%011o\0", bytes.count), at: 124)
        put(String(format: "%011o\0", 1_700_000_000), at: 136)
        put("        ", at: 148)
        header[156] = UInt8(ascii: "0")
        put("ustar\0", at: 257)
        put("00", at: 263)
        let sum = header.reduce(0) { $0 + Int($1) }
        put(String(format: "%06o\0 ", sum), at: 148)
        archive.append(contentsOf: header)
        archive.append(contentsOf: bytes)
        archive.append(contentsOf: [UInt8](repeating: 0, count: (512 - bytes.count % 512) % 512))
    }
    archive.append(contentsOf: [UInt8](repeating: 0, count: 1024))
    return archive
}
