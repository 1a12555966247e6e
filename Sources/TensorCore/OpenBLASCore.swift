import CKernels
#if canImport(Glibc)
import Glibc
#endif

/// What the CPU reports through cpuid: vendor, family, model and the vector extensions that
/// decide which OpenBLAS kernels it can run. A feature counts only when the operating system also
/// saves its registers.
public struct CPUFeatures: Sendable, Equatable, CustomStringConvertible {
    /// The cpuid vendor string ("GenuineIntel", "AuthenticAMD", …; empty off x86-64).
    public var vendor: String
    /// Display family and model (extended fields folded in), e.g. 25/17 for AMD Zen 4 (Genoa).
    public var family: Int, model: Int
    /// AVX2 and FMA.
    public var avx2FMA: Bool
    /// AVX-512 F, CD, BW, DQ and VL.
    public var avx512: Bool
    /// AVX512-BF16 (bfloat16 dot products) on top of AVX-512.
    public var avx512BF16: Bool

    public init(vendor: String, family: Int = 0, model: Int = 0, avx2FMA: Bool, avx512: Bool, avx512BF16: Bool) {
        (self.vendor, self.family, self.model) = (vendor, family, model)
        (self.avx2FMA, self.avx512, self.avx512BF16) = (avx2FMA, avx512, avx512BF16)
    }

    /// This machine's CPU.
    public static var current: CPUFeatures {
        var raw = vlm_cpu_features()
        vlm_cpu_read(&raw)
        let vendor = withUnsafeBytes(of: raw.vendor) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        return CPUFeatures(vendor: vendor, family: Int(raw.family), model: Int(raw.model), avx2FMA: raw.avx2_fma != 0,
                           avx512: raw.avx512 != 0, avx512BF16: raw.avx512_bf16 != 0)
    }

    /// The widest of the extensions above, as a short phrase ("AVX512-BF16", "AVX-512", "AVX2+FMA").
    public var widestExtension: String {
        avx512BF16 ? "AVX512-BF16" : avx512 ? "AVX-512" : avx2FMA ? "AVX2+FMA" : "no AVX2"
    }

    public var description: String {
        "\(vendor.isEmpty ? "unknown vendor" : vendor) family \(family) model \(model), \(widestExtension)"
    }
}

/// Which OpenBLAS kernel set ("core") to run, checked once when `vlm` starts.
///
/// OpenBLAS's `DYNAMIC_ARCH` builds pick their kernels from a table of CPU models compiled into
/// the library; a CPU newer than the table gets a generic fallback (Debian 12's 0.3.21 runs the SSE3
/// *Prescott* kernels on Intel Emerald Rapids, 4× slower than its AVX-512 kernels). ``decide`` compares
/// OpenBLAS's choice with what the CPU supports and, when the choice under-uses it, names the
/// better core; the caller applies it by setting `OPENBLAS_CORETYPE` before OpenBLAS loads (OpenBLAS
/// reads it once, in its load-time constructor). A value already in the environment is never overridden.
public enum OpenBLASCore {
    /// OpenBLAS's own variable naming the kernel set.
    public static let coreTypeVariable = "OPENBLAS_CORETYPE"
    /// `0` (or `off`, `no`, `false`) turns the correction off.
    public static let correctionVariable = "VLMKIT_OPENBLAS_CORRECTION"
    /// Set together with `OPENBLAS_CORETYPE` by the correction itself, so the restarted process can
    /// tell its own setting from the user's: `corrected:<core OpenBLAS chose>` or `simulated`.
    public static let originVariable = "VLMKIT_OPENBLAS_CORE_ORIGIN"
    /// Test hook: `VLMKIT_SIMULATE_OPENBLAS_CORE=Prescott` makes `vlm` start OpenBLAS on that core as
    /// if OpenBLAS's own detection had chosen it, so the correction can be measured on a CPU that
    /// OpenBLAS already knows.
    public static let simulationVariable = "VLMKIT_SIMULATE_OPENBLAS_CORE"

    /// What to do about the core.
    public enum Action: Equatable, Sendable {
        /// Run on the core OpenBLAS loaded with.
        case keep
        /// Restart with `OPENBLAS_CORETYPE = coreType` and ``originVariable`` `= origin` in the environment.
        case restart(coreType: String, origin: String)
    }

    /// A decision and its reason, in words for a user.
    public struct Decision: Equatable, Sendable {
        public var action: Action
        public var reason: String
        /// Whether a user should be told once (on stderr): the core in use is not OpenBLAS's own
        /// choice, or it under-uses the CPU and the correction was turned off or did not take.
        public var isNotice = false
    }

    /// Kernel sets by how much of an x86-64 CPU they use: 0 = SSE-era generic, 1 = AVX (or AMD
    /// cores without AVX2 kernels), 2 = AVX2+FMA, 3 = AVX-512, 4 = AVX-512 with BF16. Names as
    /// `openblas_get_corename` prints them (compared case-insensitively).
    static let tiers: [String: Int] = [
        "unknown": 0, "katmai": 0, "coppermine": 0, "northwood": 0, "prescott": 0, "banias": 0, "atom": 0,
        "core2": 0, "penryn": 0, "dunnington": 0, "nehalem": 0, "athlon": 0, "opteron": 0,
        "opteron_sse3": 0, "barcelona": 0, "nano": 0, "bobcat": 0,
        "sandybridge": 1, "bulldozer": 1, "piledriver": 1, "steamroller": 1,
        "haswell": 2, "excavator": 2, "zen": 2,
        "skylakex": 3,
        "cooperlake": 4, "sapphirerapids": 4,
    ]

    /// The tier of an OpenBLAS core name, or nil for a name this table does not know (a newer
    /// OpenBLAS or another architecture), which is then trusted.
    public static func tier(of core: String) -> Int? { tiers[core.lowercased()] }

    /// The best kernel set `cpu` can run: Cooperlake (AVX512-BF16), SkylakeX (AVX-512), Haswell
    /// (AVX2+FMA; also right for AMD Zen), or nil when it has none of these.
    public static func bestCore(for cpu: CPUFeatures) -> (name: String, tier: Int)? {
        if cpu.avx512BF16 { return ("Cooperlake", 4) }
        if cpu.avx512 { return ("SkylakeX", 3) }
        if cpu.avx2FMA { return ("Haswell", 2) }
        return nil
    }

    /// The decision for a process in which OpenBLAS loaded `chosenCore` on `cpu`, given the
    /// process environment (only the variables above are read). `dynamicArch` is whether the
    /// library can switch kernels at all (`DYNAMIC_ARCH` in its configuration). A pure function.
    public static func decide(chosenCore: String, cpu: CPUFeatures, dynamicArch: Bool,
                              environment: [String: String]) -> Decision {
        let keep = { (reason: String) in Decision(action: .keep, reason: reason) }
        let notice = { (reason: String) in Decision(action: .keep, reason: reason, isNotice: true) }
        let origin = environment[originVariable]
        if let requested = environment[coreTypeVariable] {
            if let origin, origin.hasPrefix("corrected:") {
                let from = origin.dropFirst("corrected:".count)
                if requested.lowercased() != chosenCore.lowercased() {
                    return notice("VLMKit asked for \(requested) (OpenBLAS chose \(from)), but OpenBLAS loaded \(chosenCore)")
                }
                return notice("OpenBLAS chose \(from), which under-uses this CPU (\(cpu.widestExtension)); corrected to \(chosenCore) (\(correctionVariable)=0 keeps OpenBLAS's choice)")
            }
            if origin != "simulated" {
                return keep("\(coreTypeVariable)=\(requested) is set in the environment (never overridden)")
            }
        }
        let simulated = origin == "simulated" && environment[coreTypeVariable] != nil
        let chose = simulated ? "OpenBLAS chose \(chosenCore) (simulated by \(simulationVariable))" : "OpenBLAS chose \(chosenCore)"
        if let simulate = environment[simulationVariable], !simulate.isEmpty, !simulated, dynamicArch {
            return Decision(action: .restart(coreType: simulate, origin: "simulated"),
                            reason: "\(simulationVariable)=\(simulate): restarting as if OpenBLAS had chosen \(simulate)")
        }
        guard dynamicArch else { return keep("\(chose); this OpenBLAS is built for one core (no DYNAMIC_ARCH)") }
        guard let best = bestCore(for: cpu) else { return keep("\(chose); the CPU (\(cpu)) has no AVX2+FMA to use better") }
        guard let tier = tier(of: chosenCore) else {
            return keep("\(chose), a core VLMKit does not know; kept (best known for this CPU: \(best.name))")
        }
        guard tier < best.tier else { return keep("\(chose), which fits this CPU (\(cpu.widestExtension))") }
        if let setting = environment[correctionVariable], ["0", "off", "no", "false"].contains(setting.lowercased()) {
            return notice("\(chose), which under-uses this CPU (\(cpu.widestExtension)); \(best.name) would fit, but \(correctionVariable)=\(setting) keeps it")
        }
        return Decision(action: .restart(coreType: best.name, origin: "corrected:\(chosenCore)\(simulated ? " (simulated)" : "")"),
                        reason: "\(chose), which under-uses this CPU (\(cpu.widestExtension)); restarting on \(best.name)")
    }

    /// The decision for this process.
    public static var current: Decision {
        decide(chosenCore: BLAS.coreName, cpu: .current, dynamicArch: BLAS.isDynamicArch,
               environment: ProcessEnvironment.variables([coreTypeVariable, correctionVariable, originVariable,
                                                          simulationVariable]))
    }
}

/// Reads environment variables without Foundation (TensorCore does not import it).
enum ProcessEnvironment {
    static func variables(_ names: [String]) -> [String: String] {
        var result: [String: String] = [:]
        for name in names {
            if let value = getenv(name) { result[name] = String(cString: value) }
        }
        return result
    }
}
