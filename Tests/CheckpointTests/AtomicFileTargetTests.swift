import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Checkpoint

/// Where atomic writes land: through links, onto devices and pipes, and what they clean up.
@Suite("Atomic writes: links, devices, pipes, stale temporaries")
struct AtomicFileTargetTests {
    @Test("Writing through a symbolic link replaces the file it points to and keeps the link")
    func followsLinks() throws {
        let folder = try TemporaryFolder()
        let real = folder.file("real.json"), link = folder.file("link.json"), chain = folder.file("chain.json")
        try Data("old".utf8).write(to: real)
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: "real.json")
        try FileManager.default.createSymbolicLink(atPath: chain.path, withDestinationPath: link.path)
        try AtomicFile.write(Data("new".utf8), to: chain)
        #expect(try String(contentsOf: real, encoding: .utf8) == "new")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link.path) == "real.json")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: chain.path) == link.path)
        #expect(folder.contents == ["chain.json", "link.json", "real.json"])
    }

    @Test("A dangling link creates its target; a link into another folder writes there")
    func danglingAndForeignLinks() throws {
        let folder = try TemporaryFolder(), other = try TemporaryFolder()
        let link = folder.file("out.bin")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: other.file("made.bin").path)
        try AtomicFile.write(Data([1, 2, 3]), to: link)
        #expect(try Data(contentsOf: other.file("made.bin")) == Data([1, 2, 3]))
        #expect(other.contents == ["made.bin"] && folder.contents == ["out.bin"])
    }

    @Test("A FIFO is written directly, not replaced by a regular file")
    func writesFIFO() throws {
        let folder = try TemporaryFolder()
        let fifo = folder.file("pipe")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        let reader = open(fifo.path, O_RDONLY | O_NONBLOCK)
        defer { close(reader) }
        let file = try AtomicFile(destination: fifo)
        #expect(file.isDirect)
        try file.write("through the pipe")
        try file.commit()
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = read(reader, &buffer, buffer.count)
        #expect(String(decoding: buffer.prefix(max(n, 0)), as: UTF8.self) == "through the pipe")
        var info = stat()
        #expect(lstat(fifo.path, &info) == 0 && info.st_mode & S_IFMT == S_IFIFO, "the FIFO must stay a FIFO")
        #expect(folder.contents == ["pipe"])
    }

    @Test("/dev/fd/N writes to this process's descriptor N; /dev/null is written, not replaced")
    func writesDescriptorsAndDevices() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]) }
        try AtomicFile.write(Data("to the descriptor".utf8), to: URL(fileURLWithPath: "/dev/fd/\(ends[1])"))
        close(ends[1])
        let received = FileHandle(fileDescriptor: ends[0]).readDataToEndOfFile()
        #expect(String(decoding: received, as: UTF8.self) == "to the descriptor")

        try AtomicFile.write(Data("discarded".utf8), to: URL(fileURLWithPath: "/dev/null"))
        var info = stat()
        #expect(lstat("/dev/null", &info) == 0 && info.st_mode & S_IFMT == S_IFCHR)
    }

    @Test("A folder as the destination is an error naming it")
    func folderIsAnError() throws {
        let folder = try TemporaryFolder()
        let message = thrownDescription { try AtomicFile.write(Data(), to: folder.url) }
        #expect(message?.contains(folder.url.path) == true && message?.contains("folder") == true, "\(message ?? "no error")")
    }

    @Test("The next write removes temporaries whose writer died, and keeps a live writer's")
    func removesStaleTemporaries() throws {
        let folder = try TemporaryFolder()
        let url = folder.file("state.json")
        let finished = Process()
        finished.executableURL = URL(fileURLWithPath: "/bin/true")
        try finished.run()
        finished.waitUntilExit()
        let dead = folder.file(".state.json.tmp-\(finished.processIdentifier)-Ab12Cd")
        let live = folder.file(".state.json.tmp-\(getppid())-Ef34Gh")
        let unrelated = folder.file(".other.json.tmp-\(finished.processIdentifier)-Ij56Kl")
        for stale in [dead, live, unrelated] { try Data(repeating: 7, count: 1000).write(to: stale) }
        try AtomicFile.write(Data("fresh".utf8), to: url)
        #expect(folder.contents == [live.lastPathComponent, unrelated.lastPathComponent, "state.json"].sorted())
    }

    @Test("Temporaries in progress are registered for removal on interrupt until they are committed")
    func temporariesAreRegistered() throws {
        let folder = try TemporaryFolder()
        let file = try AtomicFile(destination: folder.file("big.bin"))
        try file.write(Data(repeating: 1, count: 4096))
        let tempFolder = try TemporarySibling.makeFolder(beside: folder.file("model"))
        #expect(PendingTemporaries.registered.isSuperset(of: [file.temporaryPath!, tempFolder.path]))
        try file.commit()
        TemporarySibling.releaseFolder(tempFolder)
        #expect(PendingTemporaries.registered.isDisjoint(with: [file.temporaryPath!, tempFolder.path]))
        try FileManager.default.removeItem(at: tempFolder)
        #expect(folder.contents == ["big.bin"])
    }
}
