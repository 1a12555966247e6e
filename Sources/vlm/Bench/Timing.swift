import Foundation
import TensorCore

/// Wall-clock timing for benchmarks.
enum Timing {
    /// Seconds since an arbitrary origin (monotonic).
    static func now() -> Double { Double(BLAS.Profile.now()) * 1e-9 }

    /// The 1-minute load average, as `/proc/loadavg` gives it ("?" where there is none).
    static var loadAverage: String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)).flatMap { $0.split(separator: " ").first.map(String.init) } ?? "?"
    }

    /// The CPU's model name as /proc/cpuinfo gives it ("?" where there is none).
    static var cpuModelName: String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "?" }
        for line in info.split(separator: "\n") where line.hasPrefix("model name") {
            return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "?"
        }
        return "?"
    }

    /// CPU seconds used by all of this process's threads so far (on a loaded machine, the work a
    /// step does, where its wall time mostly measures the other processes).
    static func processCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }

    /// The median of `rounds` timings of `body` after one warm-up run, each round repeating `body`
    /// enough times to last at least `minimumSeconds`. Returns seconds per call.
    static func median(rounds: Int = 5, minimumSeconds: Double = 0.2, _ body: () -> Void) -> Double {
        body()
        let start = now()
        body()
        let single = max(now() - start, 1e-7)
        let repeats = max(1, Int(minimumSeconds / single))
        var samples: [Double] = []
        for _ in 0..<rounds {
            let roundStart = now()
            for _ in 0..<repeats { body() }
            samples.append((now() - roundStart) / Double(repeats))
        }
        return samples.sorted()[samples.count / 2]
    }

    /// Medians of seconds per call for several bodies timed in alternation (A B C A B C …), each
    /// sample repeating its body for at least `minimumSeconds`, after one warm-up call each.
    static func alternatingMedians(rounds: Int, minimumSeconds: Double = 0.1, _ bodies: [() -> Void]) -> [Double] {
        let repeats = bodies.map { body -> Int in
            body()
            let start = now()
            body()
            return max(1, Int(minimumSeconds / max(now() - start, 1e-7)))
        }
        var samples = Array(repeating: [Double](), count: bodies.count)
        for _ in 0..<rounds {
            for (index, body) in bodies.enumerated() {
                let start = now()
                for _ in 0..<repeats[index] { body() }
                samples[index].append((now() - start) / Double(repeats[index]))
            }
        }
        return samples.map { $0.sorted()[$0.count / 2] }
    }

    /// Peak resident set size of this process in megabytes (`VmHWM` from /proc/self/status).
    static func peakResidentMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kilobytes = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
            return kilobytes / 1024
        }
        return 0
    }
}

/// One JSON object line from ordered key/value pairs (numbers and strings).
func jsonLine(_ pairs: [(String, Any)]) -> String {
    let fields = pairs.map { key, value -> String in
        switch value {
        case let number as Double: return "\"\(key)\": \(number.isFinite ? String(format: "%.6g", number) : "null")"
        case let number as Int: return "\"\(key)\": \(number)"
        default: return "\"\(key)\": \"\(value)\""
        }
    }
    return "{" + fields.joined(separator: ", ") + "}"
}

/// Prints the 40 shapes with the most GEMM time (``BLAS/Profile/byShape``), one line each: the
/// `--gemm-shapes` listing of `vlm bench train` and `vlm bench dpo`.
func printGEMMShapes(_ shapes: [(shape: String, seconds: Double, flops: Int, calls: Int)]) {
    for entry in shapes.prefix(40) {
        print(String(format: "  GEMM %-22@ %4d calls %7.1f ms %6.1f GFLOP/s", entry.shape, entry.calls, entry.seconds * 1e3,
                     Double(entry.flops) / max(entry.seconds, 1e-9) / 1e9))
    }
}
