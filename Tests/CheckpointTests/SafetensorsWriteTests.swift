import Foundation
import Testing
import TensorCore
import _TestSupport
@testable import Checkpoint

@Suite("Writing safetensors")
struct SafetensorsWriteTests {
    /// The tensors of Scripts/fixtures/make_checkpoint_fixtures.py's `reference_tensors()`, rebuilt
    /// from the bytes Python recorded.
    static func referenceTensors() throws -> [String: Tensor] {
        let data = try Data(contentsOf: Fixtures.url("checkpoint/python_all_dtypes.expected.json"))
        let expected = try JSONSerialization.jsonObject(with: data) as! [String: [String: Any]]
        let dtypes: [String: DType] = ["float32": .float32, "float64": .float64, "float16": .float16,
                                      "bfloat16": .bfloat16, "int64": .int64, "int32": .int32, "uint8": .uint8, "bool": .bool]
        var result: [String: Tensor] = [:]
        for (name, entry) in expected {
            result[name] = tensor(bytes: hexBytes(entry["hex"] as! String), dtype: dtypes[entry["dtype"] as! String]!,
                                  shape: entry["shape"] as! [Int])
        }
        return result
    }

    @Test("Every dtype round-trips bit-exactly, NaN, infinities and -0 included, with metadata")
    func everyDTypeRoundTrips() throws {
        let folder = try TemporaryFolder()
        var generator = SeededGenerator(seed: 7)
        var tensors: [(String, Tensor)] = []
        for dtype in DType.allCases {
            var bytes = (0..<(6 * dtype.byteSize)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if dtype == .bool { bytes = bytes.map { $0 & 1 } }
            tensors.append(("random.\(dtype)", tensor(bytes: bytes, dtype: dtype, shape: [2, 3])))
        }
        let specials: [Float] = [.nan, -.nan, .infinity, -.infinity, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude]
        let signalling = Float(bitPattern: 0x7FA0_0001)
        tensors.append(("special.f32", Tensor(specials + [signalling], shape: [8])))
        tensors.append(("special.f64", Tensor([.nan, -0.0, .infinity, Double(bitPattern: 0x7FF0_0000_0000_0001)], shape: [4])))
        tensors.append(("special.bf16", tensor(bytes: [0xC0, 0x7F, 0x80, 0xFF, 0x00, 0x80, 0x81, 0x7F], dtype: .bfloat16, shape: [4])))
        tensors.append(("special.f16", tensor(bytes: [0x00, 0x7E, 0x00, 0xFC, 0x00, 0x80, 0x01, 0x7C], dtype: .float16, shape: [4])))
        tensors.append(("scalar", Tensor(scalar: 3)))
        tensors.append(("empty", Tensor(zeros: [3, 0], dtype: .bfloat16)))
        let metadata = ["format": "pt", "note": "quote \" backslash \\ newline \n tab \t unicode é 🦙"]
        let url = folder.file("all.safetensors")
        try writeSafetensors(tensors: tensors, metadata: metadata, to: url)

        let file = try SafetensorsFile(url: url)
        #expect(file.names == tensors.map(\.0))
        #expect(file.metadata == metadata)
        for (name, original) in tensors {
            let loaded = try file.tensor(name)
            #expect(loaded.dtype == original.dtype && loaded.shape == original.shape, "\(name)")
            #expect(rawBytes(loaded) == rawBytes(original), "\(name)")
        }
        let headerLength = try Data(contentsOf: url).prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(headerLength % 8 == 0)
    }

    @Test("Written with Python's layout order, the file is byte-identical to the one Python wrote")
    func byteIdenticalToPython() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("same.safetensors")
        try writeSafetensors(tensors: try Self.referenceTensors(), metadata: ["format": "pt"], to: url)
        let ours = try Data(contentsOf: url)
        let python = try Data(contentsOf: Fixtures.url("checkpoint/python_all_dtypes.safetensors"))
        #expect(ours == python)
    }

    /// Set VLMKIT_WRITE_FIXTURES=1 to refresh Tests/Fixtures/checkpoint/vlmkit_written.safetensors,
    /// which the fixture script then loads with Python's safetensors and checks byte for byte.
    @Test("The committed VLMKit-written fixture is what the writer produces today")
    func committedFixtureIsCurrent() throws {
        let fixture = Fixtures.url("checkpoint/vlmkit_written.safetensors")
        let tensors = try Self.referenceTensors()
        if ProcessInfo.processInfo.environment["VLMKIT_WRITE_FIXTURES"] == "1" {
            try writeSafetensors(tensors: tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                                 metadata: ["format": "pt"], to: fixture)
        }
        let file = try SafetensorsFile(url: fixture)
        #expect(file.names == tensors.keys.sorted())
        for (name, original) in tensors { #expect(rawBytes(try file.tensor(name)) == rawBytes(original), "\(name)") }
    }

    @Test("Non-contiguous tensors are written in row-major order")
    func nonContiguous() throws {
        let folder = try TemporaryFolder()
        let base = Tensor((0..<24).map { Float($0) }, shape: [2, 3, 4])
        let transposed = base.transposed(0, 2)                  // (4, 3, 2)
        let sliced = base.slice(axis: 2, 1..<3)                  // (2, 3, 2)
        let bf16 = base.converted(to: .bfloat16).permuted([1, 0, 2])
        let url = folder.file("views.safetensors")
        try writeSafetensors(tensors: [("t", transposed), ("s", sliced), ("b", bf16)], to: url)
        let file = try SafetensorsFile(url: url)
        #expect(try file.tensor("t").floats() == transposed.copy().floats())
        #expect(try file.tensor("s").floats() == sliced.copy().floats())
        #expect(try file.tensor("s").shape == [2, 3, 2])
        #expect(try rawBytes(file.tensor("b")) == rawBytes(bf16.copy()))
    }

    @Test("Duplicate and reserved names are refused before anything is written")
    func refusedNames() throws {
        let folder = try TemporaryFolder()
        let t = Tensor([1] as [Float], shape: [1])
        let url = folder.file("x.safetensors")
        #expect(thrownDescription { try writeSafetensors(tensors: [("a", t), ("a", t)], to: url) }?.contains("duplicate tensor name 'a'") == true)
        #expect(thrownDescription { try writeSafetensors(tensors: [("__metadata__", t)], to: url) }?.contains("reserved") == true)
        #expect(folder.contents.isEmpty)
    }
}

@Suite("Streamed safetensors writing")
struct StreamedWriteTests {
    @Test("Tensor bytes can be supplied in chunks; too few or too many is an error naming the tensor")
    func streamedFill() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("streamed.safetensors")
        let declaration = TensorDeclaration(name: "big", dtype: .int32, shape: [1000])
        try writeSafetensors(declarations: [declaration], to: url) { _, write in
            for chunk in 0..<10 {
                let values = (0..<100).map { Int32(chunk * 100 + $0) }
                try values.withUnsafeBytes { try write($0) }
            }
        }
        #expect(try SafetensorsFile(url: url).tensor("big").integers() == Array(0..<1000))
        let short = thrownDescription {
            try writeSafetensors(declarations: [declaration], to: folder.file("short.safetensors")) { _, write in
                try [Int32](repeating: 0, count: 10).withUnsafeBytes { try write($0) }
            }
        }
        #expect(short?.contains("'big' was given 40 of its 4000 bytes") == true)
        #expect(folder.contents == ["streamed.safetensors"])
    }
}
