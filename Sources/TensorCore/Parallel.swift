import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Splits loops across the machine's cores (OpenBLAS threads its own GEMMs).
public enum Parallel {
    /// The number of worker threads element-wise kernels use.
    public static let threadCount: Int = {
        if let value = getenv("VLMKIT_NUM_THREADS").flatMap({ Int(String(cString: $0)) }), value > 0 { return value }
        return max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }()

    /// Runs `body` over `0..<count` split into contiguous ranges, in parallel when each range gets
    /// at least `grain` iterations (small loops stay on the calling thread: dispatch costs microseconds).
    @inlinable
    public static func forEachRange(_ count: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let chunks = min(threadCount, count / max(grain, 1))
        if chunks <= 1 {
            body(0..<count)
            return
        }
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                let start = count * chunk / chunks
                let end = count * (chunk + 1) / chunks
                body(start..<end)
            }
        }
    }
}
