import TensorCore

/// The activation functions configurations name (`hidden_act`, `projector_hidden_act`), by
/// transformers' `ACT2FN` names.
public enum Activation: String, Sendable, CaseIterable {
    /// Exact GELU, `x·Φ(x)`.
    case gelu
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`, also spelled `gelu_new`).
    case geluTanh = "gelu_pytorch_tanh"
    /// OpenAI CLIP's `x·σ(1.702·x)`.
    case quickGELU = "quick_gelu"
    case silu
    case relu
    /// The identity.
    case linear

    /// The activation a configuration names, accepting transformers' aliases (`gelu_new`, `swish`);
    /// nil for one VLMKit does not implement.
    public init?(named name: String) {
        let aliases = ["gelu_new": Activation.geluTanh, "swish": .silu]
        guard let activation = Activation(rawValue: name) ?? aliases[name] else { return nil }
        self = activation
    }

    /// The names ``init(named:)`` accepts, for error messages.
    public static var implementedNames: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// Applies the function element-wise.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .gelu: x.gelu()
        case .geluTanh: x.gelu(approximation: .tanh)
        case .quickGELU: x.quickGELU()
        case .silu: x.silu()
        case .relu: x.relu()
        case .linear: x
        }
    }
}
