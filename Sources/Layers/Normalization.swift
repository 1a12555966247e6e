import TensorCore

/// Root-mean-square normalisation over the last axis, `LlamaRMSNorm`:
/// `y = weight ⊙ x / √(mean(x²) + ε)`, computed in float32.
public final class RMSNorm: Module {
    @Param public var weight: Tensor
    public let epsilon: Double

    public init(dimension: Int, epsilon: Double, factory: ParameterFactory) {
        weight = factory.constant(1, shape: [dimension])
        self.epsilon = epsilon
        super.init()
    }

    /// `[..., D] → [..., D]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { x.rmsNorm(weight: weight, epsilon: epsilon) }
}

/// Layer normalisation over the last axis with optional affine parameters, `nn.LayerNorm`.
public final class LayerNorm: Module {
    @Param public var weight: Tensor
    @Param public var bias: Tensor?
    public let epsilon: Double

    public init(dimension: Int, epsilon: Double, bias: Bool = true, factory: ParameterFactory) {
        weight = factory.constant(1, shape: [dimension])
        self.bias = bias ? factory.constant(0, shape: [dimension]) : nil
        self.epsilon = epsilon
        super.init()
    }

    /// `[..., D] → [..., D]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, epsilon: epsilon) }
}

/// A lookup table of token embeddings, `nn.Embedding` (`weight` `[V, D]`).
public final class Embedding: Module {
    @Param public var weight: Tensor

    public init(count: Int, dimension: Int, factory: ParameterFactory) {
        weight = factory.normal([count, dimension])
        super.init()
    }

    /// Integer ids `[...]` → `[..., D]`.
    public func callAsFunction(_ ids: Tensor) -> Tensor { embedding(ids, table: weight) }
}
