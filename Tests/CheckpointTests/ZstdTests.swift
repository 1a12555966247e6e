import _TestSupport
import Foundation
import Testing
import TensorCore
@testable import Checkpoint

@Suite("zstd-compressed safetensors")
struct ZstdTests {
    static func sampleTensors() -> [(String, Tensor)] {
        [("model.embed_tokens.weight", Tensor((0..<4096).map { Float($0 % 97) / 7 }, shape: [64, 64])),
         ("model.norm.weight", Tensor(zeros: [64], dtype: .bfloat16)),
         ("ids", Tensor(indices: [1, 2, 3], shape: [3]))]
    }

    @Test("A .safetensors.zst file round-trips and declares its size so it decompresses into one buffer")
    func roundTrip() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("model.safetensors.zst")
        let tensors = Self.sampleTensors()
        try writeSafetensors(tensors: tensors, metadata: ["format": "pt"], to: url)
        let compressed = try Data(contentsOf: url)
        let declared = compressed.withUnsafeBytes { Zstd.declaredContentSize($0) }
        let plain = folder.file("model.safetensors")
        try writeSafetensors(tensors: tensors, metadata: ["format": "pt"], to: plain)
        #expect(declared == (try Data(contentsOf: plain)).count)
        #expect(compressed.count < declared!)

        let file = try SafetensorsFile(url: url)
        #expect(file.metadata == ["format": "pt"])
        for (name, original) in tensors { #expect(rawBytes(try file.tensor(name)) == rawBytes(original)) }
        // The decompressed bytes equal the uncompressed file exactly.
        #expect(try Zstd.decompress(contentsOf: url) == Array(try Data(contentsOf: plain)))
    }

    @Test("Streams without a declared size still decompress (the buffer grows)")
    func unknownSize() throws {
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31 >> 3) }
        var compressed: [UInt8] = []
        let compressor = try ZstdCompressor(pledgedSize: nil, source: "memory") { compressed += $0 }
        try payload.withUnsafeBytes { try compressor.write($0) }
        try compressor.finish()
        let storage = try compressed.withUnsafeBytes { try Zstd.decompressToStorage($0, source: "memory") }
        #expect(Array(UnsafeRawBufferPointer(start: storage.baseAddress, count: storage.byteCount)) == payload)
    }

    @Test("Truncated or corrupt zstd files are errors naming the file")
    func corrupt() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("model.safetensors.zst")
        try writeSafetensors(tensors: Self.sampleTensors(), to: url)
        let good = Array(try Data(contentsOf: url))
        var generator = SeededGenerator(seed: 11)
        var cases: [[UInt8]] = [[], Array(good.prefix(3)), Array("not zstd at all".utf8)]
        for _ in 0..<40 { cases.append(Array(good.prefix(Int.random(in: 0..<good.count, using: &generator)))) }
        for _ in 0..<60 {
            var bytes = good
            let position = Int.random(in: 0..<bytes.count, using: &generator)
            bytes[position] ^= UInt8.random(in: 1...255, using: &generator)
            cases.append(bytes)
        }
        for (number, bytes) in cases.enumerated() {
            let caseURL = folder.file("case\(number).safetensors.zst")
            try Data(bytes).write(to: caseURL)
            do {
                let file = try SafetensorsFile(url: caseURL)
                // A flip the checksum cannot see (e.g. in a skippable part) may still load validly.
                for name in file.names { _ = try? rawBytes(file.tensor(name)) }
            } catch let error as CheckpointError {
                #expect(error.file == caseURL.path)
            }
        }
    }
}
