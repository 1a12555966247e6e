import Foundation
import Testing
import TensorCore
import _TestSupport
@testable import Checkpoint

/// Damaged files must never crash or hang the reader: each case either loads a file whose every
/// tensor lies inside it, or throws a ``CheckpointError`` naming the file.
@Suite("Corrupt files")
struct CorruptionTests {
    static let fixture = Fixtures.url("checkpoint/tiny_tree.safetensors")

    /// Opens `bytes` and touches every byte of every tensor (so an out-of-bounds view would fault).
    /// Returns whether it loaded.
    private func loadOrExplain(_ bytes: [UInt8], name: String) -> Bool {
        do {
            let file = try openImage(bytes, name: name)
            for info in file.tensorInfos {
                #expect(info.dataOffsets.upperBound <= file.byteCount)
                guard let tensor = try? file.tensor(info.name) else { continue }
                #expect(rawBytes(tensor).count == info.byteCount)
            }
            return true
        } catch let error as CheckpointError {
            #expect(error.file == name)
            #expect(!error.reason.isEmpty)
            return false
        } catch {
            Issue.record("\(name): unexpected error type \(error)")
            return false
        }
    }

    @Test("Truncating a real file at 300 seeded offsets never crashes and always names the file")
    func truncation() throws {
        let good = Array(try Data(contentsOf: Self.fixture))
        var generator = SeededGenerator(seed: 2024)
        var offsets = Array(0..<min(64, good.count))
        for _ in 0..<300 { offsets.append(Int.random(in: 0..<good.count, using: &generator)) }
        var loaded = 0
        for offset in offsets where loadOrExplain(Array(good.prefix(offset)), name: "cut-at-\(offset).safetensors") {
            loaded += 1
        }
        // Cutting anywhere removes bytes some tensor needs, so nothing shorter than the file loads.
        #expect(loaded == 0)
        #expect(loadOrExplain(good, name: "whole.safetensors"))
    }

    @Test("Flipping bytes in the header at 2000 seeded positions never crashes")
    func headerFlips() throws {
        let good = Array(try Data(contentsOf: Self.fixture))
        let headerEnd = 8 + Int(good.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var generator = SeededGenerator(seed: 99)
        var outcomes = (loaded: 0, refused: 0)
        for round in 0..<2000 {
            var bytes = good
            for _ in 0...(round % 3) {
                let position = Int.random(in: 0..<headerEnd, using: &generator)
                // Half the flips put a JSON-significant character in, the rest random bits.
                let specials = Array("{}[],:\"0123456789-.eE ".utf8)
                bytes[position] = round % 2 == 0 ? specials.randomElement(using: &generator)!
                                                 : bytes[position] ^ UInt8.random(in: 1...255, using: &generator)
            }
            if loadOrExplain(bytes, name: "flip-\(round).safetensors") { outcomes.loaded += 1 } else { outcomes.refused += 1 }
        }
        #expect(outcomes.refused > 1000)
    }

    @Test("Damaged data bytes are not detected (safetensors has no checksum) but stay in bounds")
    func dataFlips() throws {
        var bytes = Array(try Data(contentsOf: Self.fixture))
        bytes[bytes.count - 1] ^= 0xFF
        #expect(loadOrExplain(bytes, name: "data.safetensors"))
    }
}
