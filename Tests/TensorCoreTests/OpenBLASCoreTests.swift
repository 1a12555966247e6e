import Testing
import TensorCore

@Suite("OpenBLAS core correction")
struct OpenBLASCoreTests {
    static let emeraldRapids = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 207, avx2FMA: true, avx512: true, avx512BF16: true)
    static let skylakeServer = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 85, avx2FMA: true, avx512: true, avx512BF16: false)
    static let zen4 = CPUFeatures(vendor: "AuthenticAMD", family: 25, model: 17, avx2FMA: true, avx512: true, avx512BF16: true)
    static let zen3 = CPUFeatures(vendor: "AuthenticAMD", family: 25, model: 1, avx2FMA: true, avx512: false, avx512BF16: false)
    static let oldCPU = CPUFeatures(vendor: "GenuineIntel", family: 6, model: 42, avx2FMA: false, avx512: false, avx512BF16: false)

    private func decide(_ chosen: String, _ cpu: CPUFeatures, dynamicArch: Bool = true,
                        _ environment: [String: String] = [:]) -> OpenBLASCore.Decision {
        OpenBLASCore.decide(chosenCore: chosen, cpu: cpu, dynamicArch: dynamicArch, environment: environment)
    }

    @Test("A generic fallback is corrected to the best kernel set the CPU supports")
    func fallbackIsCorrected() {
        #expect(decide("Prescott", Self.emeraldRapids).action == .restart(coreType: "Cooperlake", origin: "corrected:Prescott"))
        #expect(decide("Nehalem", Self.skylakeServer).action == .restart(coreType: "SkylakeX", origin: "corrected:Nehalem"))
        #expect(decide("Sandybridge", Self.zen3).action == .restart(coreType: "Haswell", origin: "corrected:Sandybridge"))
        #expect(decide("Katmai", Self.zen4).action == .restart(coreType: "Cooperlake", origin: "corrected:Katmai"))
        // AVX2 kernels on a CPU with AVX-512 also under-use it.
        #expect(decide("Haswell", Self.skylakeServer).action == .restart(coreType: "SkylakeX", origin: "corrected:Haswell"))
        // Names compare case-insensitively, as OpenBLAS compares OPENBLAS_CORETYPE.
        #expect(decide("PRESCOTT", Self.emeraldRapids).action == .restart(coreType: "Cooperlake", origin: "corrected:PRESCOTT"))
        #expect(decide("Unknown", Self.zen3).action == .restart(coreType: "Haswell", origin: "corrected:Unknown"))
    }

    @Test("A core that fits the CPU is kept: OpenBLAS's own Cooperlake on Zen 4, Zen kernels on an AVX2 CPU")
    func fittingCoreIsKept() {
        let zen4 = decide("Cooperlake", Self.zen4)
        #expect(zen4.action == .keep && !zen4.isNotice)
        #expect(zen4.reason.contains("fits"))
        #expect(decide("Zen", Self.zen3).action == .keep)
        #expect(decide("Haswell", Self.zen3).action == .keep)
        #expect(decide("SkylakeX", Self.skylakeServer).action == .keep)
        // A better core than the CPU's best tier (a newer OpenBLAS knows more) is never lowered.
        #expect(decide("SapphireRapids", Self.skylakeServer).action == .keep)
    }

    @Test("A value the user (or the machine) set is never overridden, whatever it is")
    func userSettingIsKept() {
        for setting in ["Prescott", "Haswell", "cooperlake", "", "NoSuchCore"] {
            let decision = decide("Prescott", Self.emeraldRapids, ["OPENBLAS_CORETYPE": setting])
            #expect(decision.action == .keep)
            #expect(decision.reason.contains("never overridden"))
            // Not even by the simulation hook.
            #expect(decide("Prescott", Self.emeraldRapids, ["OPENBLAS_CORETYPE": setting,
                                                             "VLMKIT_SIMULATE_OPENBLAS_CORE": "Prescott"]).action == .keep)
        }
    }

    @Test("Unknown vendor: the features decide; an unknown core name or a CPU without AVX2 is left alone")
    func unknownVendorAndCores() {
        let hygon = CPUFeatures(vendor: "HygonGenuine", family: 24, model: 0, avx2FMA: true, avx512: false, avx512BF16: false)
        #expect(decide("Prescott", hygon).action == .restart(coreType: "Haswell", origin: "corrected:Prescott"))
        let unnamed = CPUFeatures(vendor: "", avx2FMA: false, avx512: false, avx512BF16: false)
        let none = decide("Prescott", unnamed)
        #expect(none.action == .keep)
        #expect(none.reason.contains("unknown vendor"))
        #expect(decide("Prescott", Self.oldCPU).action == .keep)
        let future = decide("GraniteRapids", Self.emeraldRapids)
        #expect(future.action == .keep && future.reason.contains("does not know"))
        #expect(decide("ARMV8", unnamed).action == .keep)
    }

    @Test("The correction can be turned off, and a library built for one core is left alone")
    func correctionOffAndStaticBuilds() {
        for value in ["0", "off", "NO", "false"] {
            let decision = decide("Prescott", Self.emeraldRapids, ["VLMKIT_OPENBLAS_CORRECTION": value])
            #expect(decision.action == .keep)
            #expect(decision.isNotice && decision.reason.contains("Cooperlake would fit"))
        }
        #expect(decide("Prescott", Self.emeraldRapids, ["VLMKIT_OPENBLAS_CORRECTION": "1"]).action
                == .restart(coreType: "Cooperlake", origin: "corrected:Prescott"))
        #expect(decide("Prescott", Self.emeraldRapids, dynamicArch: false).action == .keep)
    }

    @Test("After the restart the process reports the correction and never restarts again")
    func restartedProcessKeeps() {
        let corrected = decide("Cooperlake", Self.emeraldRapids, ["OPENBLAS_CORETYPE": "Cooperlake",
                                                                  "VLMKIT_OPENBLAS_CORE_ORIGIN": "corrected:Prescott"])
        #expect(corrected.action == .keep && corrected.isNotice)
        #expect(corrected.reason.contains("OpenBLAS chose Prescott") && corrected.reason.contains("corrected to Cooperlake"))
        // OpenBLAS ignored the request (say, a build without those kernels): say so, do not loop.
        let ignored = decide("Prescott", Self.emeraldRapids, ["OPENBLAS_CORETYPE": "Cooperlake",
                                                              "VLMKIT_OPENBLAS_CORE_ORIGIN": "corrected:Prescott"])
        #expect(ignored.action == .keep && ignored.isNotice && ignored.reason.contains("loaded Prescott"))
    }

    @Test("Every restart the decision asks for ends in a process that keeps its core, on a core the CPU can run")
    func restartsTerminate() {
        let cpus = [Self.emeraldRapids, Self.skylakeServer, Self.zen4, Self.zen3, Self.oldCPU]
        let cores = ["Prescott", "Core2", "Nehalem", "Sandybridge", "Haswell", "Zen", "SkylakeX", "Cooperlake", "Unknown"]
        let environments: [[String: String]] = [[:], ["VLMKIT_SIMULATE_OPENBLAS_CORE": "Prescott"],
                                                ["VLMKIT_OPENBLAS_CORRECTION": "0", "VLMKIT_SIMULATE_OPENBLAS_CORE": "Core2"]]
        for cpu in cpus {
            for chosen in cores {
                for start in environments {
                    var (environment, core, restarts) = (start, chosen, 0)
                    while case .restart(let next, let origin) = decide(core, cpu, environment).action {
                        if origin != "simulated" {
                            let best = OpenBLASCore.bestCore(for: cpu)
                            #expect(next == best?.name, "\(cpu) \(chosen) \(start)")
                        }
                        (environment["OPENBLAS_CORETYPE"], environment["VLMKIT_OPENBLAS_CORE_ORIGIN"]) = (next, origin)
                        core = next  // OpenBLAS honours the request
                        restarts += 1
                        if restarts > 2 { break }
                    }
                    #expect(restarts <= 2, "\(cpu) \(chosen) \(start)")
                }
            }
        }
    }

    @Test("The simulation hook starts on the named core, then the correction applies to it")
    func simulation() {
        let hook = ["VLMKIT_SIMULATE_OPENBLAS_CORE": "Prescott"]
        #expect(decide("Cooperlake", Self.zen4, hook).action == .restart(coreType: "Prescott", origin: "simulated"))
        let simulated = hook.merging(["OPENBLAS_CORETYPE": "Prescott", "VLMKIT_OPENBLAS_CORE_ORIGIN": "simulated"]) { $1 }
        #expect(decide("Prescott", Self.zen4, simulated).action
                == .restart(coreType: "Cooperlake", origin: "corrected:Prescott (simulated)"))
        let off = simulated.merging(["VLMKIT_OPENBLAS_CORRECTION": "0"]) { $1 }
        let kept = decide("Prescott", Self.zen4, off)
        #expect(kept.action == .keep && kept.reason.contains("simulated"))
    }

    @Test("This machine's cpuid reading is self-consistent and agrees with the C kernels' path")
    func currentCPU() {
        let cpu = CPUFeatures.current
        if cpu.avx512BF16 { #expect(cpu.avx512) }
        if cpu.avx512 { #expect(cpu.avx2FMA) }
        #if arch(x86_64)
        #expect(!cpu.vendor.isEmpty && cpu.family > 0)
        // The C kernels need a subset of these features (and VLMKIT_KERNEL_PATH can only lower the path).
        if KernelPath.best == .avx512 { #expect(cpu.avx2FMA) }
        if KernelPath.best == .avx2 { #expect(cpu.avx2FMA) }
        #endif
        #expect(!BLAS.coreName.isEmpty)
    }
}
