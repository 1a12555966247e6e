import Foundation
import Testing
import TensorCore
import _TestSupport
@testable import Checkpoint

@Suite("Reading safetensors")
struct SafetensorsReadTests {
    static let pythonFile = Fixtures.url("checkpoint/python_all_dtypes.safetensors")

    @Test("A file written by Python's safetensors loads with every tensor's bytes exact")
    func pythonFileLoadsExactly() throws {
        let file = try SafetensorsFile(url: Self.pythonFile)
        let expectedData = try Data(contentsOf: Fixtures.url("checkpoint/python_all_dtypes.expected.json"))
        let expected = try #require(JSONSerialization.jsonObject(with: expectedData) as? [String: [String: Any]])
        let torchNames: [String: DType] = ["float32": .float32, "float64": .float64, "float16": .float16,
                                          "bfloat16": .bfloat16, "int64": .int64, "int32": .int32, "uint8": .uint8, "bool": .bool]
        #expect(Set(file.names) == Set(expected.keys))
        #expect(file.metadata == ["format": "pt"])
        for (name, entry) in expected {
            let tensor = try file.tensor(name)
            #expect(tensor.dtype == torchNames[entry["dtype"] as! String], "\(name)")
            #expect(tensor.shape == entry["shape"] as! [Int], "\(name)")
            #expect(rawBytes(tensor) == hexBytes(entry["hex"] as! String), "\(name)")
        }
        #expect(try file.tensor("f32").floats()[6].isNaN)
        #expect(try file.tensor("scalar").item() == 2.5)
    }

    @Test("Tensors are zero-copy views of the mapped file")
    func tensorsViewTheMapping() throws {
        let file = try SafetensorsFile(url: Self.pythonFile)
        let tensor = try file.tensor("model.layers.0.self_attn.q_proj.weight")
        #expect(tensor.storage.isBorrowed)
        #expect(tensor.floats() == (0..<24).map { Float($0) / 8 })
        let info = try file.info("model.layers.0.self_attn.q_proj.weight")
        #expect(info.dtype == .F32 && info.shape == [4, 6] && info.byteCount == 96)
    }

    @Test("Header order is kept and names are listed in file order")
    func namesInFileOrder() throws {
        let file = try SafetensorsFile(url: Self.pythonFile)
        #expect(file.names.first == "i64")
        #expect(file.names.last == "bool")
        #expect(file.tensorInfos.map(\.dataOffsets.lowerBound) == file.tensorInfos.map(\.dataOffsets.lowerBound).sorted())
    }

    @Test("Asking for an absent tensor names the file and the tensor")
    func absentTensor() throws {
        let file = try SafetensorsFile(url: Self.pythonFile)
        let message = thrownDescription { _ = try file.tensor("nope.weight") }
        #expect(message?.contains("python_all_dtypes.safetensors") == true)
        #expect(message?.contains("nope.weight") == true)
    }

    @Test("A valid dtype TensorCore cannot hold is reported as unsupported by name")
    func unsupportedDType() throws {
        let file = try openImage(safetensorsImage(
            header: #"{"q":{"dtype":"I8","shape":[2],"data_offsets":[0,2]},"f":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[2,3]}}"#,
            data: [1, 2, 3]))
        #expect(try file.info("q").dtype == .I8)
        let message = thrownDescription { _ = try file.tensor("f") }
        #expect(message?.contains("F8_E4M3") == true && message?.contains("'f'") == true)
    }

    @Test("A missing file is an error naming it")
    func missingFile() {
        let message = thrownDescription { _ = try SafetensorsFile(path: "/nonexistent/model.safetensors") }
        #expect(message?.contains("/nonexistent/model.safetensors") == true)
    }
}

@Suite("Mapping lifetime")
struct MappingLifetimeTests {
    @Test("A tensor keeps its file mapped after the file object is gone")
    func tensorOutlivesFile() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("m.safetensors")
        try writeSafetensors(tensors: [("w", Tensor((0..<8).map { Float($0) }, shape: [2, 4]))], to: url)
        var tensor: Tensor? = nil
        do { tensor = try SafetensorsFile(url: url).tensor("w") }
        try FileManager.default.removeItem(at: url)
        #expect(tensor?.floats() == (0..<8).map { Float($0) })
    }
}
