// Times scaledDotProductAttention (float32) in a release build: median and best wall time of the
// forward and of forward+backward, and the best process CPU time (all threads) of forward+backward.
import Foundation
import TensorCore

func wallTime() -> Double { Date().timeIntervalSince1970 }
func cpuTime() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
func milliseconds(_ seconds: Double) -> String { String(format: "%.2f", seconds * 1000) }
func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

func trainingStep(batch: Int, heads: Int, kvHeads: Int, length: Int, headWidth: Int, causal: Bool, repeats: Int) {
    var generator = RandomGenerator(seed: 1)
    let query = Tensor.randomNormal([batch, heads, length, headWidth], using: &generator)
    let key = Tensor.randomNormal([batch, kvHeads, length, headWidth], using: &generator)
    let value = Tensor.randomNormal([batch, kvHeads, length, headWidth], using: &generator)
    let upstream = Tensor.randomNormal([batch, heads, length, headWidth], using: &generator)
    for t in [query, key, value] { t.requiresGrad = true }
    var forward: [Double] = [], total: [Double] = [], cpu: [Double] = []
    for iteration in 0...repeats {
        let c0 = cpuTime(), t0 = wallTime()
        let out = scaledDotProductAttention(query: query, key: key, value: value, mask: AttentionMask(isCausal: causal))
        let t1 = wallTime()
        out.backward(gradient: upstream)
        let t2 = wallTime(), c1 = cpuTime()
        for t in [query, key, value] { t.grad = nil }
        if iteration == 0 { continue }  // warm-up
        forward.append(t1 - t0)
        total.append(t2 - t0)
        cpu.append(c1 - c0)
    }
    print("B\(batch) H\(heads) K\(kvHeads) T\(length) Dh\(headWidth) causal \(causal): "
          + "forward \(milliseconds(median(forward))) ms (best \(milliseconds(forward.min()!))), "
          + "forward+backward \(milliseconds(median(total))) ms (best \(milliseconds(total.min()!))), "
          + "cpu \(milliseconds(cpu.min()!)) ms")
}

func decodeStep(heads: Int, kvHeads: Int, cacheLength: Int, headWidth: Int, repeats: Int) {
    var generator = RandomGenerator(seed: 2)
    let query = Tensor.randomNormal([1, heads, 1, headWidth], using: &generator)
    let key = Tensor.randomNormal([1, kvHeads, cacheLength, headWidth], using: &generator)
    let value = Tensor.randomNormal([1, kvHeads, cacheLength, headWidth], using: &generator)
    let mask = AttentionMask(isCausal: true, causalOffset: cacheLength - 1)
    var times: [Double] = []
    for _ in 0..<repeats {
        let t0 = wallTime()
        _ = scaledDotProductAttention(query: query, key: key, value: value, mask: mask)
        times.append(wallTime() - t0)
    }
    print("decode H\(heads) K\(kvHeads) Tk\(cacheLength) Dh\(headWidth): \(milliseconds(median(times))) ms (best \(milliseconds(times.min()!)))")
}

let which = CommandLine.arguments.dropFirst().first ?? "all"
print("threads \(Parallel.threadCount), OpenBLAS \(BLAS.threadCount): \(BLAS.configuration)")
if which == "all" || which == "small" {
    for causal in [true, false] { trainingStep(batch: 8, heads: 8, kvHeads: 2, length: 128, headWidth: 64, causal: causal, repeats: 20) }
}
if which == "all" || which == "long" {
    for causal in [true, false] { trainingStep(batch: 1, heads: 8, kvHeads: 2, length: 2048, headWidth: 64, causal: causal, repeats: 5) }
}
if which == "all" || which == "decode" {
    decodeStep(heads: 32, kvHeads: 8, cacheLength: 2048, headWidth: 128, repeats: 100)
}
