/// A seeded, reproducible random number generator for initialisation, dropout and sampling.
///
/// SplitMix64: tiny state, good statistical quality for these purposes, identical sequences on
/// every platform. Normal samples use the Box–Muller transform.
public struct RandomGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator whose sequence is determined by `seed`.
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    public mutating func nextUniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// A standard normal sample.
    public mutating func nextNormal() -> Double {
        let u1 = max(nextUniform(), 0x1.0p-60), u2 = nextUniform()
        return (-2 * Double.log(u1)).squareRoot() * Double.cos(2 * .pi * u2)
    }

    /// An independent generator derived from this one (for per-layer or per-worker streams).
    public mutating func split() -> RandomGenerator { RandomGenerator(seed: next()) }
}

extension Tensor {
    /// A float tensor of independent normal samples with the given mean and standard deviation.
    public static func randomNormal(_ shape: [Int], mean: Double = 0, standardDeviation: Double = 1,
                                    dtype: DType = .float32, using generator: inout RandomGenerator) -> Tensor {
        let count = Shape.elementCount(shape)
        let values = (0..<count).map { _ in mean + standardDeviation * generator.nextNormal() }
        return dtype == .float64 ? Tensor(values, shape: shape) : Tensor(values.map { Float($0) }, shape: shape)
    }

    /// A float tensor of independent uniform samples in `range`.
    public static func randomUniform(_ shape: [Int], in range: ClosedRange<Double> = 0...1,
                                     dtype: DType = .float32, using generator: inout RandomGenerator) -> Tensor {
        let count = Shape.elementCount(shape)
        let width = range.upperBound - range.lowerBound
        let values = (0..<count).map { _ in range.lowerBound + width * generator.nextUniform() }
        return dtype == .float64 ? Tensor(values, shape: shape) : Tensor(values.map { Float($0) }, shape: shape)
    }
}
