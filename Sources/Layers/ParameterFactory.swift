import TensorCore

/// Makes the initial tensors of a model's parameters.
///
/// A model built to be *trained from scratch* draws its weights from a seeded generator, with the
/// initialisation Hugging Face's `_init_weights` uses (normal with `initializer_range`, zero
/// biases, unit norms). A model built to be *loaded* gets uninitialised buffers instead: large
/// allocations are lazily backed by the kernel, so building the skeleton of an 8B model costs no
/// memory before strict loading replaces every tensor.
public final class ParameterFactory {
    /// How tensors are filled.
    public enum Mode: Sendable {
        /// Seeded random weights; normals use `standardDeviation`.
        case random(seed: UInt64, standardDeviation: Double)
        /// Placeholders whose contents are undefined until loaded.
        case uninitialized
    }

    public let mode: Mode
    private var generator: RandomGenerator

    public init(_ mode: Mode) {
        self.mode = mode
        if case .random(let seed, _) = mode { generator = RandomGenerator(seed: seed) } else { generator = RandomGenerator(seed: 0) }
    }

    /// Whether tensors will be replaced by loading.
    public var isPlaceholder: Bool { if case .uninitialized = mode { true } else { false } }

    /// A weight drawn from N(0, σ²) (σ from the mode unless given).
    public func normal(_ shape: [Int], standardDeviation: Double? = nil) -> Tensor {
        switch mode {
        case .uninitialized: return Tensor(uninitialized: shape)
        case .random(_, let sigma):
            return Tensor.randomNormal(shape, standardDeviation: standardDeviation ?? sigma, using: &generator)
        }
    }

    /// A weight drawn uniformly from `range`.
    public func uniform(_ shape: [Int], in range: ClosedRange<Double>) -> Tensor {
        isPlaceholder ? Tensor(uninitialized: shape) : Tensor.randomUniform(shape, in: range, using: &generator)
    }

    /// A tensor of `value` (norm scales, biases, gates).
    public func constant(_ value: Double, shape: [Int]) -> Tensor {
        isPlaceholder ? Tensor(uninitialized: shape) : Tensor.filled(value, shape: shape)
    }
}
