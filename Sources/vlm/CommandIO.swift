import ArgumentParser
import Checkpoint
import Foundation
import TensorCore
#if canImport(Glibc)
import Glibc
#endif

/// Where an output option points: `-` is standard output; anything else goes through
/// ``AtomicFile`` (links followed, devices and pipes written directly, files replaced atomically).
func outputURL(_ path: String) -> URL {
    URL(fileURLWithPath: path == "-" ? "/dev/stdout" : path)
}

/// Whether an output path is standard output (so progress lines go to standard error instead).
func isStandardOutput(_ path: String) -> Bool { path == "-" || path == "/dev/stdout" }

/// Prints a progress or summary line: on standard output, unless the command's data goes there.
func report(_ line: String, dataPath: String) {
    if isStandardOutput(dataPath) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    } else {
        print(line)
    }
}

/// The bytes of an input option: `-` is standard input; pipes, `/dev/stdin` and process
/// substitutions are read to their end like files.
func readInput(_ path: String) throws -> Data {
    if path == "-" { return FileHandle.standardInput.readDataToEndOfFile() }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw CommandFailure("\(path): cannot read (\(String(cString: strerror(errno))))") }
    var info = stat()
    if fstat(fd, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR {
        close(fd)
        throw CommandFailure("\(path): is a folder, not a file")
    }
    return FileHandle(fileDescriptor: fd, closeOnDealloc: true).readDataToEndOfFile()
}

/// Opens a safetensors input: regular files are memory-mapped; `-`, pipes and devices are read
/// into memory first.
func openSafetensorsInput(_ path: String) throws -> SafetensorsFile {
    var info = stat()
    if path != "-" && stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG {
        return try SafetensorsFile(path: path)
    }
    let data = try readInput(path)
    let storage = Storage(byteCount: data.count)
    data.withUnsafeBytes { if data.count > 0 { storage.baseAddress.copyMemory(from: $0.baseAddress!, byteCount: data.count) } }
    return try SafetensorsFile(contents: storage, path: path == "-" ? "standard input" : path)
}
