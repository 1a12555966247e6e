import Synchronization

/// The arithmetic of the matrix products in linear layers while training.
public enum MatrixPrecision: String, CaseIterable, Codable, Sendable {
    /// float32 operands and sums (OpenBLAS `sgemm`).
    case float32
    /// bfloat16 operands, float32 sums (``BFloat16GEMM``), through ``BFloat16Linear``; master
    /// weights, gradients and optimiser state stay float32. Needs AVX512-BF16.
    case bf16

    /// Why this precision cannot run on `cpu` (a sentence naming the missing feature), or nil.
    ///
    /// bf16 on a CPU without AVX512-BF16 is refused rather than run: the portable kernel is far
    /// slower than float32 `sgemm`, and silently training in float32 instead would change results
    /// the recipe asked for.
    public func unsupportedReason(on cpu: CPUFeatures = .current) -> String? {
        guard self == .bf16, !cpu.avx512BF16 else { return nil }
        return "precision bf16 needs a CPU with AVX512-BF16 (the vdpbf16ps instruction); this CPU (\(cpu)) lacks it — use precision float32"
    }
}

/// Runs the matrix products of ``Tensor/linear(weight:bias:)`` with bfloat16 operands and float32
/// sums within a scope (``run(_:)``), for mixed-precision training.
///
/// The setting is task-local, like `Autograd`'s no-gradient scope: the trainer wraps each step in
/// it, and nothing outside the scope (evaluation, generation, other models) changes. A linear
/// layer's backward uses the setting its forward saw.
///
/// Frozen weights (`requiresGrad == false`) are rounded and packed once, on first use, and kept
/// here: they must not change while this object is in use. Their forward (`x · Wᵀ`) and input
/// gradient (`dy · W`) products run in bf16. Trainable weights change every step, so with
/// ``convertsTrainableWeights`` their three products round the operands on every call instead;
/// without it they stay float32.
public final class BFloat16Linear: @unchecked Sendable {
    /// The scope's setting (nil: float32 products).
    @TaskLocal public static var active: BFloat16Linear?

    /// Whether the products of trainable weights (forward, input gradient, weight gradient) run in
    /// bf16 too.
    public let convertsTrainableWeights: Bool

    private struct Key: Hashable {
        var storage: ObjectIdentifier, offset: Int, n: Int, k: Int, forward: Bool
    }
    private struct Entry {
        weak var storage: Storage?
        var packed: BFloat16GEMM.PackedOperand
    }
    private let cache = Mutex([Key: Entry]())

    /// - Parameter convertsTrainableWeights: also round trainable weights' products (on every call).
    public init(convertsTrainableWeights: Bool = true) {
        self.convertsTrainableWeights = convertsTrainableWeights
    }

    /// Runs `body` with linear products in bf16.
    public func run<Result>(_ body: () throws -> Result) rethrows -> Result {
        try Self.$active.withValue(self, operation: body)
    }

    /// Bytes of packed frozen weights held.
    public var cachedBytes: Int { cache.withLock { $0.values.reduce(0) { $0 + $1.packed.byteCount } } }

    /// The operand B for `x · Wᵀ` (`forward`) or `dy · W` with the contiguous `[n, k]` weight `w`
    /// (`trainable`: it changes between steps, so it is never cached), or nil when the product
    /// stays float32.
    func operand(for w: Tensor, trainable: Bool, n: Int, k: Int, forward: Bool) -> BFloat16GEMM.Operand? {
        if trainable {
            guard convertsTrainableWeights && w.dtype == .float32 else { return nil }
            return forward ? .matrix(.transposed, w.floatPointer, ldb: k) : .matrix(.none, w.floatPointer, ldb: k)
        }
        let key = Key(storage: ObjectIdentifier(w.storage), offset: w.offset, n: n, k: k, forward: forward)
        return cache.withLock { table in
            if let entry = table[key], entry.storage === w.storage { return .packed(entry.packed) }
            let w32 = w.dtype == .float32 ? w : w.converted(to: .float32)   // widening bf16/f16 is exact
            let packed = withExtendedLifetime(w32) {
                forward ? BFloat16GEMM.PackedOperand(.transposed, w32.floatPointer, ldb: k, k: k, n: n)
                        : BFloat16GEMM.PackedOperand(.none, w32.floatPointer, ldb: k, k: n, n: k)
            }
            table = table.filter { $0.value.storage != nil }   // weights freed since
            table[key] = Entry(storage: w.storage, packed: packed)
            return .packed(packed)
        }
    }
}
