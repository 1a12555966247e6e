import ArgumentParser
import Foundation
import Layers
import TensorCore

/// `vlm bench ops`: GEMM throughput through the tensor API against raw `cblas_sgemm`, and the share
/// of a linear stack's forward + backward time spent inside GEMM.
struct OpsBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "GEMM through the tensor API vs raw cblas_sgemm, and GEMM's share of a linear stack's training step.")

    @Option(help: "Square GEMM sizes to measure.")
    var sizes: [Int] = [256, 512, 1024, 2048]

    @Option(help: "Width of the linear stack.")
    var width: Int = 1024

    @Option(help: "Number of linear layers in the stack.")
    var depth: Int = 8

    @Flag(help: "Put a SiLU between the linear layers (the plain stack has none).")
    var activation = false

    @Option(help: "Rows (tokens) pushed through the stack.")
    var tokens: Int = 512

    @Option(help: "Timed rounds per measurement (the median is reported).")
    var rounds: Int = 5

    func run() throws {
        print("OpenBLAS: \(BLAS.configuration), \(BLAS.threadCount) threads; element-wise threads: \(Parallel.threadCount)")
        print("OpenBLAS core \(OpenBLASStartup.coreSummary): \(OpenBLASCore.current.reason)")
        print("CPU: \(CPUFeatures.current); C kernels (CKernels) path: \(KernelPath.best)")
        var json: [(String, Any)] = [("openblas_core", BLAS.coreName), ("ckernels_path", KernelPath.best.description)]
        // The arithmetic ceiling every GEMM figure below should be read against.
        let peaks = KernelPath.allCases.filter { $0 > .portable && $0 <= KernelPath.best }.map { path in
            (path, PeakFlops.measure(path: path), PeakFlops.measure(path: path, threads: Parallel.threadCount))
        }
        for (path, one, all) in peaks {
            print(String(format: "peak fused multiply-add, %@ (%d lanes): %.1f GFLOP/s on one thread, %.1f GFLOP/s on %d",
                         path.description, path.lanes, one / 1e9, all / 1e9, Parallel.threadCount))
            json.append(("peak_\(path == .avx512 ? "avx512" : "avx2")_gflops", all / 1e9))
        }
        // What bf16 operands with float32 accumulation could reach (mixed-precision training), and
        // whether this OpenBLAS has the GEMM for it (Debian 12's 0.3.21 is built without BUILD_BFLOAT16).
        let sbgemm = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "cblas_sbgemm") != nil
        if let bf16 = PeakFlops.measureBFloat16Dot(threads: Parallel.threadCount) {
            print(String(format: "peak bf16 dot product (AVX512-BF16, float32 sums): %.1f GFLOP/s on %d threads; cblas_sbgemm in this OpenBLAS: %@",
                         bf16 / 1e9, Parallel.threadCount, sbgemm ? "yes" : "no"))
            json.append(("peak_bf16_dot_gflops", bf16 / 1e9))
        }
        json.append(("cblas_sbgemm", sbgemm ? "yes" : "no"))
        for n in sizes {
            let (raw, tensor, transposed) = measureGEMM(n)
            let flops = 2 * Double(n * n * n)
            print(String(format: "GEMM %5d³: raw sgemm %7.1f GFLOP/s | Tensor.matmul %7.1f GFLOP/s (%5.1f%%) | with transposed view %7.1f GFLOP/s",
                         n, flops / raw / 1e9, flops / tensor / 1e9, 100 * raw / tensor, flops / transposed / 1e9))
            json += [("gemm_\(n)_raw_gflops", flops / raw / 1e9), ("gemm_\(n)_tensor_gflops", flops / tensor / 1e9),
                     ("gemm_\(n)_ratio", raw / tensor)]
        }
        if BFloat16GEMM.isNative {
            // VLMKit's own bf16 GEMM on the training step's largest shapes (Docs/benchmarks.md).
            for shape in Self.bf16Shapes {
                let (sgemm, packed, rounded) = measureBFloat16GEMM(shape)
                let flops = 2 * Double(shape.m * shape.n * shape.k)
                let name = "\(shape.transA == .none ? "N" : "T")\(shape.transB == .none ? "N" : "T") \(shape.m)×\(shape.n)×\(shape.k)"
                print(String(format: "bf16 GEMM %@: sgemm %6.1f GFLOP/s | bf16, B packed before %6.1f (%.2f×) | bf16, both rounded per call %6.1f (%.2f×)",
                             name, flops / sgemm / 1e9, flops / packed / 1e9, sgemm / packed, flops / rounded / 1e9, sgemm / rounded))
                let key = name.replacingOccurrences(of: " ", with: "_").replacingOccurrences(of: "×", with: "x")
                json += [("bf16_\(key)_sgemm_gflops", flops / sgemm / 1e9), ("bf16_\(key)_packed_gflops", flops / packed / 1e9),
                         ("bf16_\(key)_rounded_gflops", flops / rounded / 1e9)]
            }
        } else {
            print("bf16 GEMM: not measured (this CPU lacks AVX512-BF16)")
        }
        let stack = measureLinearStack()
        print(String(format: "Linear stack %d × [%d → %d]%@, %d tokens, forward + backward: %.2f ms, GEMM %.2f ms (%.1f%% of the step), %.1f GFLOP/s overall",
                     depth, width, width, activation ? " with SiLU" : "", tokens, stack.seconds * 1e3, stack.gemmSeconds * 1e3,
                     100 * stack.gemmSeconds / stack.seconds, stack.flops / stack.seconds / 1e9))
        json += [("linear_stack_ms", stack.seconds * 1e3), ("linear_stack_gemm_share", stack.gemmSeconds / stack.seconds),
                 ("linear_stack_gflops", stack.flops / stack.seconds / 1e9), ("peak_rss_mb", Timing.peakResidentMegabytes())]
        print(jsonLine(json))
    }

    /// Seconds per `[n, n] · [n, n]` product: raw BLAS into a preallocated buffer, through
    /// `Tensor.matmul` (which allocates its output), and through a transposed view. The three are
    /// timed in alternation, round after round, so that a change in machine load hits all alike.
    private func measureGEMM(_ n: Int) -> (raw: Double, tensor: Double, transposed: Double) {
        var generator = RandomGenerator(seed: UInt64(n))
        let a = Tensor.randomUniform([n, n], in: -1...1, using: &generator)
        let b = Tensor.randomUniform([n, n], in: -1...1, using: &generator)
        let bt = b.transposed()
        let c = Tensor(zeros: [n, n])
        let bodies: [() -> Void] = [
            { BLAS.gemm(.none, .none, m: n, n: n, k: n, a: a.floatPointer, lda: n, b: b.floatPointer, ldb: n,
                        c: c.floatPointer, ldc: n) },
            { _ = a.matmul(b) },
            { _ = a.matmul(bt) },
        ]
        let timings = Timing.alternatingMedians(rounds: rounds * 3, bodies)
        return (timings[0], timings[1], timings[2])
    }

    /// Shapes of `vlm bench train --preset small` (m × n × k of `op(A) · op(B)`): the text MLP's
    /// forward and input gradient, q/o projections, lm_head, and a vision weight gradient.
    static let bf16Shapes: [(transA: BLAS.Transpose, transB: BLAS.Transpose, m: Int, n: Int, k: Int)] = [
        (.none, .transposed, 1024, 1536, 512), (.none, .none, 1024, 512, 1536), (.none, .transposed, 1024, 512, 512),
        (.none, .transposed, 1024, 8192, 512), (.transposed, .none, 256, 256, 2304), (.none, .none, 1024, 1024, 1024),
    ]

    /// Seconds per product of `shape`: OpenBLAS sgemm, the bf16 kernel with B packed beforehand
    /// (a frozen weight), and the bf16 kernel rounding both operands on the call; in alternation.
    private func measureBFloat16GEMM(_ shape: (transA: BLAS.Transpose, transB: BLAS.Transpose, m: Int, n: Int, k: Int))
        -> (sgemm: Double, packed: Double, rounded: Double) {
        let (m, n, k) = (shape.m, shape.n, shape.k)
        var generator = RandomGenerator(seed: UInt64(m * n + k))
        let a = Tensor.randomUniform([m * k], in: -1...1, using: &generator)
        let b = Tensor.randomUniform([k * n], in: -1...1, using: &generator)
        let c = Tensor(zeros: [m * n])
        let lda = shape.transA == .none ? k : m, ldb = shape.transB == .none ? n : k
        let packed = BFloat16GEMM.PackedOperand(shape.transB, b.floatPointer, ldb: ldb, k: k, n: n)
        let bodies: [() -> Void] = [
            { BLAS.gemm(shape.transA, shape.transB, m: m, n: n, k: k, a: a.floatPointer, lda: lda, b: b.floatPointer, ldb: ldb,
                        c: c.floatPointer, ldc: n) },
            { BFloat16GEMM.multiply(shape.transA, m: m, n: n, k: k, a: a.floatPointer, lda: lda, b: .packed(packed),
                                    accumulate: false, c: c.floatPointer, ldc: n) },
            { BFloat16GEMM.multiply(shape.transA, m: m, n: n, k: k, a: a.floatPointer, lda: lda,
                                    b: .matrix(shape.transB, b.floatPointer, ldb: ldb), accumulate: false, c: c.floatPointer, ldc: n) },
        ]
        let timings = Timing.alternatingMedians(rounds: rounds * 3, bodies)
        return (timings[0], timings[1], timings[2])
    }

    /// A training step through `depth` linear layers (with SiLU between them when `--activation`):
    /// forward, mean-square loss, backward into every weight and bias.
    private func measureLinearStack() -> (seconds: Double, gemmSeconds: Double, flops: Double) {
        var generator = RandomGenerator(seed: 1)
        let layers = (0..<depth).map { _ in Linear(inFeatures: width, outFeatures: width, generator: &generator) }
        let input = Tensor.randomUniform([tokens, width], in: -1...1, using: &generator)
        let step = {
            var h = input
            for (index, layer) in layers.enumerated() {
                h = layer(h)
                if activation && index < layers.count - 1 { h = h.silu() }
            }
            h.squared().mean().backward()
            for layer in layers { layer.weight.grad = nil; layer.bias?.grad = nil }
        }
        let seconds = Timing.median(rounds: rounds, step)
        // The GEMM share comes from the same steps it is divided by.
        step()
        BLAS.Profile.reset(enabled: true)
        let profiled = 5
        let start = Timing.now()
        for _ in 0..<profiled { step() }
        let share = BLAS.Profile.totals.seconds / (Timing.now() - start)
        BLAS.Profile.reset(enabled: false)
        let gemmSeconds = share * seconds
        // Forward 2·T·W², backward 4·T·W² (input and weight gradients; the first layer's input
        // needs no gradient).
        let flops = Double(depth) * 2 * Double(tokens * width * width) * 3 - 2 * Double(tokens * width * width)
        return (seconds, gemmSeconds, flops)
    }
}
