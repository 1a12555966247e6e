import ArgumentParser
import Checkpoint
import Foundation
import Media
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

/// Refuses, with a plain reason, an input path that is missing, a folder or unreadable (the
/// libraries' own messages for these come from Foundation and can be cryptic).
func requireFile(_ path: String) throws {
    var info = stat()
    guard stat(path, &info) == 0 else { throw CommandFailure("\(path): \(String(cString: strerror(errno)))") }
    guard info.st_mode & S_IFMT != S_IFDIR else { throw CommandFailure("\(path): is a folder, not a file") }
    guard access(path, R_OK) == 0 else { throw CommandFailure("\(path): \(String(cString: strerror(errno)))") }
}

/// The model folder an option names, refused unless it is a folder holding `config.json`.
func modelFolder(_ path: String) throws -> URL {
    var info = stat()
    guard stat(path, &info) == 0 else { throw CommandFailure("\(path): \(String(cString: strerror(errno)))") }
    guard info.st_mode & S_IFMT == S_IFDIR else {
        throw CommandFailure("\(path): not a folder (a model is a checkpoint folder with config.json and its weights)")
    }
    let url = URL(fileURLWithPath: path)
    try requireFile(url.appendingPathComponent("config.json").path)
    return url
}

/// Decodes a PNG or JPEG file named on the command line.
func loadImageFile(_ path: String) throws -> Image {
    try requireFile(path)
    return try loadImage(path: path)
}
