import Foundation
import TensorCore

/// Runs before any command: puts OpenBLAS on the best kernel set this CPU supports when its own
/// detection fell back to a generic one (`OpenBLASCore.decide`).
///
/// OpenBLAS reads `OPENBLAS_CORETYPE` once, in a constructor that runs when the library loads —
/// before `main` — so the only way to change the core for this process is to start it again:
/// `vlm` re-executes itself (`/proc/self/exe`, same arguments) with the variable set. See
/// Docs/architecture.md for why this and not loading OpenBLAS with `dlopen`.
enum OpenBLASStartup {
    static func run() {
        let decision = OpenBLASCore.current
        guard case .restart(let core, let origin) = decision.action else {
            if decision.isNotice { say("OpenBLAS core \(BLAS.coreName): \(decision.reason)") }
            return
        }
        setenv(OpenBLASCore.coreTypeVariable, core, 1)
        setenv(OpenBLASCore.originVariable, origin, 1)
        fflush(stdout)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Only reached when the restart failed: carry on with the core OpenBLAS chose.
        let error = String(cString: strerror(errno))
        unsetenv(OpenBLASCore.coreTypeVariable)
        unsetenv(OpenBLASCore.originVariable)
        say("could not restart with \(OpenBLASCore.coreTypeVariable)=\(core) (\(error)); running on \(BLAS.coreName): \(decision.reason)")
    }

    /// The running core with the instruction set its kernels use, for benchmark headers:
    /// "Cooperlake (AVX-512 + BF16 kernels)".
    static var coreSummary: String {
        let core = BLAS.coreName
        let kernels = switch OpenBLASCore.tier(of: core) {
        case 0: "SSE kernels"
        case 1: "AVX kernels"
        case 2: "AVX2+FMA kernels"
        case 3: "AVX-512 kernels"
        case 4: "AVX-512 + BF16 kernels"
        default: "kernels of a core VLMKit does not know"
        }
        return "\(core) (\(kernels))"
    }

    private static func say(_ message: String) {
        FileHandle.standardError.write(Data("vlm: \(message)\n".utf8))
    }
}
