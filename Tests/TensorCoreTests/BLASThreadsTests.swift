import Dispatch
import Foundation
import Testing
@testable import TensorCore
import _TestSupport

/// OpenBLAS's thread count belongs to the whole process and its results depend on it; attention
/// holds it at one thread while its own workers run GEMMs. A GEMM of another thread must never run
/// inside such a window, or its bits depend on timing (the flaky post-training resume test).
@Suite("BLAS threads: one process-wide thread count, no GEMM inside another thread's single-threaded window", .serialized)
struct BLASThreadsTests {
    /// `[m, k]ᵀ · [k, n]` as the weight gradient of a linear layer computes it (K = the tokens).
    static func product(m: Int, n: Int, k: Int, seed: UInt64) -> [Float] {
        let a = randomFloats([k, m], seed: seed).floats(), b = randomFloats([k, n], seed: seed + 1).floats()
        var c = [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    BLAS.gemm(.transposed, .none, m: m, n: n, k: k, a: a.baseAddress!, lda: m, b: b.baseAddress!, ldb: n,
                              c: c.baseAddress!, ldc: n)
                }
            }
        }
        return c
    }

    @Test("a GEMM started while another thread holds OpenBLAS at one thread waits, and gives the bits of the configured thread count",
          .enabled(if: BLAS.threadCount > 1, "OpenBLAS runs on one thread here: nothing to race"))
    func gemmWaitsForSingleThreadedRegion() throws {
        // A shape whose product on one OpenBLAS thread differs from the configured count's (K between
        // OpenBLAS's block depth and twice it); without one, this OpenBLAS cannot show the race.
        var found: (shape: (Int, Int, Int), expected: [Float])? = nil
        for shape in [(512, 32, 500), (300, 300, 450), (32, 64, 700)] {
            let expected = Self.product(m: shape.0, n: shape.1, k: shape.2, seed: 3)
            var alone: [Float] = []
            BLAS.Threads.singleThreaded { BLAS.Threads.asRegionWorker { alone = Self.product(m: shape.0, n: shape.1, k: shape.2, seed: 3) } }
            if alone != expected { found = (shape, expected); break }
        }
        let (shape, expected) = try #require(found, "no shape whose one-thread product differs on this OpenBLAS")

        // Another thread enters a single-threaded window (as attention does) and stays in it for
        // 0.3 s; this thread's GEMM starts inside that window.
        let entered = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0), left = DispatchSemaphore(value: 0)
        Thread {
            BLAS.Threads.singleThreaded {
                entered.signal()
                _ = finished.wait(timeout: .now() + 0.3)
            }
            left.signal()
        }.start()
        entered.wait()
        let during = Self.product(m: shape.0, n: shape.1, k: shape.2, seed: 3)
        finished.signal()
        left.wait()
        #expect(during == expected, "the GEMM ran on one OpenBLAS thread inside another thread's window")
        // Read under the lock: a test of another suite, running alongside, may hold its own window now.
        #expect(BLAS.Threads.call { BLAS.threadCount } > 1, "the window restored the thread count")
    }

    /// The same through attention itself: while another thread runs attention in a loop (its
    /// work split across threads, OpenBLAS held at one thread meanwhile), every product here must
    /// give the configured thread count's bits. Before `BLAS.Threads`, most of them ran inside
    /// one of attention's windows and differed.
    @Test("GEMMs run while another thread computes attention give the bits of the configured thread count",
          .enabled(if: BLAS.threadCount > 1 && Parallel.threadCount > 1, "one thread: attention opens no one-thread window"))
    func gemmBesideAttention() throws {
        let (m, n, k) = (512, 32, 500)
        let expected = Self.product(m: m, n: n, k: k, seed: 5)
        final class Running: @unchecked Sendable { var value = true }
        let running = Running(), stopped = DispatchSemaphore(value: 0), started = DispatchSemaphore(value: 0)
        Thread {
            // Enough query blocks and heads for attention to split across threads.
            let q = randomFloats([4, 8, 256, 32], seed: 1), key = randomFloats([4, 8, 256, 32], seed: 2), v = randomFloats([4, 8, 256, 32], seed: 3)
            started.signal()
            while running.value { _ = scaledDotProductAttention(query: q, key: key, value: v, mask: AttentionMask(isCausal: true)) }
            stopped.signal()
        }.start()
        started.wait()
        var differing = 0
        for _ in 0..<40 where Self.product(m: m, n: n, k: k, seed: 5) != expected { differing += 1 }
        running.value = false
        stopped.wait()
        #expect(differing == 0, "\(differing) of 40 products ran on one OpenBLAS thread inside attention's window")
    }
}
