import ArgumentParser
import Checkpoint
import Foundation
import TensorCore
#if canImport(Glibc)
import Glibc
#endif

/// `vlm bench checkpoint`: shows that opening a safetensors checkpoint and reading one element
/// costs the same whether the file is 20 MB or 2 GB, because only the header is parsed and the
/// data is memory-mapped, not read.
struct CheckpointBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Time opening a safetensors file and reading one tensor's first element.",
        discussion: """
            Without --path, writes a large and a small file (sizes set by --large-mb and --small-mb) \
            of float32 tensors into a temporary folder, times both, and deletes them. Each timing \
            opens the file afresh (mmap + header parse), looks up the last tensor and reads its first \
            element. 'cold' evicts the file from the page cache first (posix_fadvise DONTNEED), so \
            the element read really faults in from disk; 'warm' does not. The last line is JSON.
            """)

    @Option(help: "Time this existing .safetensors file instead of generated ones.")
    var path: String?

    @Option(help: "Size of the large generated file, in MB.")
    var largeMb = 2048

    @Option(help: "Size of the small generated file, in MB.")
    var smallMb = 20

    @Option(help: "Timed repetitions per file (the median is reported).")
    var repeats = 7

    @Option(help: "Folder for the generated files (default: the system temporary folder).")
    var directory: String?

    func validate() throws {
        guard repeats > 0 else { throw ValidationError("--repeats must be positive") }
        guard largeMb > 0, smallMb > 0 else { throw ValidationError("--large-mb and --small-mb must be positive") }
    }

    func run() throws {
        var results: [[String: Any]] = []
        if let path {
            results.append(try measure(path: path))
        } else {
            // A registered temporary folder: removed on return, on Ctrl-C or kill, and (after a
            // SIGKILL) by the next run.
            let base = try TemporarySibling.makeFolder(
                beside: URL(fileURLWithPath: directory ?? NSTemporaryDirectory()).appendingPathComponent("vlm-bench-checkpoint"))
            defer {
                try? FileManager.default.removeItem(at: base)
                TemporarySibling.releaseFolder(base)
            }
            for megabytes in [largeMb, smallMb] {
                let url = base.appendingPathComponent("bench-\(megabytes)MB.safetensors")
                let start = DispatchTime.now()
                try writeBenchmarkFile(megabytes: megabytes, to: url)
                print("wrote \(url.lastPathComponent) in \(String(format: "%.1f", seconds(since: start))) s")
                results.append(try measure(path: url.path))
            }
        }
        for result in results {
            print("\(result["file"] as! String) (\(formatBytes(result["bytes"] as! Int))): open + first element "
                  + String(format: "cold %.3f ms, warm %.3f ms (open alone %.3f ms)",
                           result["cold_ms"] as! Double, result["warm_ms"] as! Double, result["open_ms"] as! Double))
        }
        let summary: [String: Any] = ["benchmark": "checkpoint_open", "repeats": repeats, "results": results]
        let json = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
    }

    /// Writes `megabytes` of float32 data as 64 tensors, streamed so memory stays small.
    private func writeBenchmarkFile(megabytes: Int, to url: URL) throws {
        let tensorCount = 64
        let elementsPerTensor = megabytes * 1_048_576 / 4 / tensorCount
        let declarations = (0..<tensorCount).map {
            TensorDeclaration(name: "model.layers.\($0).mlp.weight", dtype: .float32, shape: [elementsPerTensor])
        }
        let chunk = (0..<(1 << 20)).map { Float($0 % 1000) / 1000 }     // 4 MB of pattern
        try writeSafetensors(declarations: declarations, metadata: ["format": "pt"], to: url) { declaration, write in
            var remaining = declaration.byteCount
            try chunk.withUnsafeBytes { raw in
                while remaining > 0 {
                    let n = min(remaining, raw.count)
                    try write(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
                    remaining -= n
                }
            }
        }
    }

    /// Median timings of open + lookup + first-element read, cold and warm, and of open alone.
    private func measure(path: String) throws -> [String: Any] {
        let probe = try SafetensorsFile(path: path)
        guard let name = probe.tensorInfos.last(where: { $0.dtype.tensorDType != nil && $0.byteCount > 0 })?.name else {
            throw CommandFailure("\(path) holds no non-empty tensor of a supported dtype")
        }
        let bytes = probe.byteCount
        var cold: [Double] = [], warm: [Double] = [], openOnly: [Double] = []
        var checksum = 0.0
        for _ in 0..<repeats {
            evictFromPageCache(path)
            cold.append(try timeOpenAndRead(path: path, tensor: name, checksum: &checksum))
            warm.append(try timeOpenAndRead(path: path, tensor: name, checksum: &checksum))
            let start = DispatchTime.now()
            _ = try SafetensorsFile(path: path)
            openOnly.append(seconds(since: start) * 1000)
        }
        return ["file": (path as NSString).lastPathComponent, "bytes": bytes, "tensor": name,
                "cold_ms": median(cold), "warm_ms": median(warm), "open_ms": median(openOnly), "first_value": checksum / Double(2 * repeats)]
    }

    private func timeOpenAndRead(path: String, tensor name: String, checksum: inout Double) throws -> Double {
        let start = DispatchTime.now()
        let file = try SafetensorsFile(path: path)
        let tensor = try file.tensor(name)
        // Only the first element is touched: one page fault, whatever the tensor's size.
        let value = tensor.dtype == .float32 ? Double(tensor.floatPointer.pointee) : Double(tensor.rawPointer.load(as: UInt8.self))
        let elapsed = seconds(since: start) * 1000
        checksum += value
        return elapsed
    }

    private func evictFromPageCache(_ path: String) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return }
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        close(fd)
    }

    private func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    private func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }
}
