import TensorCore

/// A fully connected layer `y = x·Wᵀ + b` with `nn.Linear`'s parameter names (`weight` `[out, in]`,
/// `bias` `[out]`).
public final class Linear: Module {
    @Param public var weight: Tensor
    @Param public var bias: Tensor?
    /// LoRA's low-rank update added to the output (``LowRankAdapter``), or `nil`. Its tensors are
    /// named `lora_A.weight` and `lora_B.weight` beside `weight`, as PEFT saves them.
    public var adapter: LowRankAdapter?

    /// A layer initialised as `nn.Linear` does: weight and bias uniform in `±1/√inFeatures`.
    public init(inFeatures: Int, outFeatures: Int, bias: Bool = true, generator: inout RandomGenerator) {
        let bound = 1 / Double(inFeatures).squareRoot()
        weight = Tensor.randomUniform([outFeatures, inFeatures], in: -bound...bound, using: &generator)
        self.bias = bias ? Tensor.randomUniform([outFeatures], in: -bound...bound, using: &generator) : nil
        super.init()
        weight.requiresGrad = true
        self.bias?.requiresGrad = true
    }

    /// A layer initialised by `factory` (Hugging Face's `normal(0, initializer_range)` weights and
    /// zero biases for a randomly initialised model; placeholders for one about to be loaded).
    public init(inFeatures: Int, outFeatures: Int, bias: Bool, factory: ParameterFactory) {
        weight = factory.normal([outFeatures, inFeatures])
        self.bias = bias ? factory.constant(0, shape: [outFeatures]) : nil
        super.init()
    }

    /// A layer with the given weight `[out, in]` and optional bias `[out]`.
    public init(weight: Tensor, bias: Tensor? = nil) {
        self.weight = weight
        self.bias = bias
        super.init()
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// The adapter's layers, named as PEFT names them (`lora_A`, `lora_B`), directly below this one.
    override public func namedChildren() -> [(String, Module)] { adapter?.namedChildren() ?? [] }

    /// `[..., in] → [..., out]`, plus the adapter's update when there is one.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let output = x.linear(weight: weight, bias: bias)
        guard let adapter else { return output }
        return output + adapter(x, training: isTraining)
    }
}
