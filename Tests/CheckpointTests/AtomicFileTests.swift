import Foundation
import Testing
import TensorCore
@testable import Checkpoint

@Suite("Atomic writes")
struct AtomicFileTests {
    struct Interrupted: Error {}

    @Test("A write that throws midway leaves the old file intact and no temporary file behind")
    func failedWriteKeepsOldFile() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("state.json")
        try AtomicFile.write(Data("old".utf8), to: url)
        #expect(throws: Interrupted.self) {
            try AtomicFile.write(to: url) { file in
                try file.write("new, partial")
                throw Interrupted()
            }
        }
        #expect(try String(contentsOf: url, encoding: .utf8) == "old")
        #expect(folder.contents == ["state.json"])
    }

    @Test("A checkpoint write that fails on its second tensor keeps the previous checkpoint")
    func failedCheckpointWrite() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("model.safetensors")
        try writeSafetensors(tensors: [("a", Tensor([1, 2] as [Float], shape: [2]))], to: url)
        let before = try Data(contentsOf: url)
        let big = Tensor(zeros: [1024])
        #expect(throws: CheckpointError.self) {
            try writeSafetensors(tensors: [("a", big), ("b", big), ("a", big)], to: url)
        }
        #expect(throws: Interrupted.self) {
            try AtomicFile.write(to: url) { file in
                try file.write(Data(repeating: 0, count: 100_000))
                throw Interrupted()
            }
        }
        #expect(try Data(contentsOf: url) == before)
        #expect(folder.contents == ["model.safetensors"])
    }

    @Test("A successful write replaces the file; a dropped writer leaves nothing")
    func replaceAndDiscard() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("report.txt")
        try AtomicFile.write(Data("one".utf8), to: url)
        try AtomicFile.write(to: url) { file in
            try file.write("two")
            try file.write(Data(", three".utf8))
            #expect(file.byteCount == 10)
        }
        #expect(try String(contentsOf: url, encoding: .utf8) == "two, three")
        do { _ = try AtomicFile(destination: folder.file("never.txt")) }
        #expect(folder.contents == ["report.txt"])
    }

    @Test("A new file gets 0666 less the umask, as open(2) gives; a replaced file keeps its mode")
    func permissions() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("out.json")
        func mode() throws -> Int { (try FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as! NSNumber).intValue }
        try AtomicFile.write(Data("a".utf8), to: url)
        #expect(try mode() == Int(0o666 & ~AtomicFile.currentUmask()))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
        try AtomicFile.write(Data("b".utf8), to: url)
        #expect(try mode() == 0o600)
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: url.path)
        try AtomicFile.write(Data("c".utf8), to: url)
        #expect(try mode() == 0o640 && String(decoding: try Data(contentsOf: url), as: UTF8.self) == "c")
    }

    @Test("A folder that does not exist is an error naming the destination")
    func missingFolder() {
        let message = thrownDescription { try AtomicFile.write(Data(), to: URL(fileURLWithPath: "/nonexistent/dir/x.bin")) }
        #expect(message?.contains("/nonexistent/dir/x.bin") == true)
    }
}
