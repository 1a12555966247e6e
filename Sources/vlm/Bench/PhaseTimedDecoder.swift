import Models
import TensorCore

/// Wraps a decoder to time its calls: the first `decode` of a generation (the prompt, on an empty
/// cache) is the prefill, every later one a decoding step. What `generate` spends outside these
/// calls is token choice (sampling) and its bookkeeping. While ``BLAS/Profile`` is enabled, the
/// time the decoding steps spend in matrix products (the GEMVs of their linear layers) and in
/// attention is kept too.
final class PhaseTimedDecoder<Base: IncrementalDecoder>: IncrementalDecoder {
    let base: Base
    private(set) var prefillSeconds = 0.0
    private(set) var stepSeconds = 0.0
    private(set) var steps = 0
    /// Seconds of ``stepSeconds`` spent in profiled matrix products (0 unless profiling is on).
    private(set) var stepProductSeconds = 0.0
    /// Seconds of ``stepSeconds`` spent in profiled attention (0 unless profiling is on).
    private(set) var stepAttentionSeconds = 0.0
    private var calls = 0

    init(_ base: Base) { self.base = base }

    func makeCache(batch: Int, capacity: Int) -> Base.Cache {
        calls = 0
        return base.makeCache(batch: batch, capacity: capacity)
    }

    func decode(_ ids: Tensor, attentionMask: Tensor, cache: Base.Cache) -> Tensor {
        let products = BLAS.Profile.totals.seconds, attention = BLAS.Profile.attentionTotals.seconds
        let start = Timing.now()
        let logits = base.decode(ids, attentionMask: attentionMask, cache: cache)
        let seconds = Timing.now() - start
        if calls == 0 {
            prefillSeconds += seconds
        } else {
            stepSeconds += seconds
            steps += 1
            stepProductSeconds += BLAS.Profile.totals.seconds - products
            stepAttentionSeconds += BLAS.Profile.attentionTotals.seconds - attention
        }
        calls += 1
        return logits
    }
}
