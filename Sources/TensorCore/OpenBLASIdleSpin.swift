import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

/// How long OpenBLAS's idle worker threads spin before they sleep.
///
/// After each GEMM, OpenBLAS's workers wait for the next one by calling `sched_yield` in a loop for
/// 2^`OPENBLAS_THREAD_TIMEOUT` cycles (2^28 by default: about 0.1 s) before sleeping. Between GEMMs
/// VLMKit's own element-wise loops run on Dispatch's threads, and with as many threads as cores the
/// spinning worker takes a core from them: on 2 cores the float32 training step ran 20 % slower on
/// median and varied more (Docs/benchmarks.md, "OpenBLAS's idle spin"). Unless the user set the
/// variable, VLMKit shortens the spin to 2^22 cycles (about 1.6 ms at 2.6 GHz) before its first
/// GEMM; much shorter spins (2^20) put the threads to sleep between GEMMs, and waking them costs more.
///
/// OpenBLAS reads the variable when it loads and uses it when it starts its threads, so the change
/// re-reads the environment and restarts the threads; that does not change any result.
public enum OpenBLASIdleSpin {
    /// The variable OpenBLAS reads: the spin lasts 2^value cycles (OpenBLAS clamps it to 4…30).
    public static let variable = "OPENBLAS_THREAD_TIMEOUT"
    /// Set to 0 to leave OpenBLAS's spin as it is.
    public static let correctionVariable = "VLMKIT_OPENBLAS_SPIN_CORRECTION"
    /// The exponent VLMKit uses when the user set none.
    public static let shortenedExponent = 22

    /// The exponent to set, or nil to leave OpenBLAS alone: a value the user set is kept, and the
    /// correction can be turned off.
    public static func exponentToSet(userValue: String?, correction: String?) -> Int? {
        if correction == "0" { return nil }
        if let userValue, !userValue.isEmpty { return nil }
        return shortenedExponent
    }

    /// The exponent OpenBLAS's threads use now (0: OpenBLAS's default, 28).
    public static var currentExponent: Int { Int(openblas_thread_timeout()) }

    /// Applies the setting once; called with no GEMM running (``BLAS/Threads``).
    static let applied: Void = {
        let user = getenv(variable).map { String(cString: $0) }
        let correction = getenv(correctionVariable).map { String(cString: $0) }
        guard let exponent = exponentToSet(userValue: user, correction: correction) else { return }
        setenv(variable, String(exponent), 1)
        openblas_read_env()
        _ = blas_thread_shutdown_()
        _ = blas_thread_init()
        // Child processes (`vlm` running itself, MPI ranks) decide for themselves again.
        unsetenv(variable)
    }()
}
