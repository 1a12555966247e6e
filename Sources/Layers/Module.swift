import TensorCore

/// A building block of a model: it owns parameters and child modules, and names them the way
/// Hugging Face checkpoints do (`model.layers.3.self_attn.q_proj.weight`).
///
/// Subclasses declare parameters with ``Param`` and children as plain stored properties (a module,
/// an optional module or an array of modules). Keys are the Swift property names unless the class
/// maps them in ``checkpointKeys`` — the key table is data, read in one place:
///
/// ```swift
/// final class Attention: Module {
///     override class var checkpointKeys: [String: String] { ["queryProjection": "q_proj"] }
///     let queryProjection: Linear   // key "q_proj"
///     let norm: RMSNorm             // key "norm"
///     var layers: [Block]           // keys "layers.0", "layers.1", …
///     @Param var gate: Tensor       // key "gate"
/// }
/// ```
///
/// Names are discovered by reflection on each call; callers that need them often (optimisers)
/// keep their own list.
open class Module {
    /// Whether the module is in training mode (dropout active). Set with ``train(_:)``.
    public private(set) var isTraining = false

    public init() {}

    /// Checkpoint keys for properties whose Swift names differ from them (Swift name → key).
    open class var checkpointKeys: [String: String] { [:] }

    /// The direct children, keyed by their checkpoint names.
    open func namedChildren() -> [(String, Module)] {
        var result: [(String, Module)] = []
        for (label, value) in reflectedProperties() {
            if let module = value as? Module {
                result.append((label, module))
            } else if let modules = value as? [Module] {
                result += modules.enumerated().map { ("\(label).\($0.offset)", $0.element) }
            } else if let optional = value as? Module?, let module = optional {
                result.append((label, module))
            }
        }
        return result
    }

    /// The parameters owned directly by this module (not its children), keyed by name.
    open func namedLocalParameters() -> [(String, any ParameterSlot)] {
        reflectedProperties().compactMap { label, value in
            guard let parameter = value as? any ParameterSlot, parameter.tensor != nil else { return nil }
            return (label, parameter)
        }
    }

    /// Every parameter in this module and below, with its full dotted name, in declaration order.
    public func namedParameters(prefix: String = "") -> [(name: String, parameter: any ParameterSlot)] {
        var result = namedLocalParameters().map { (name: prefix + $0.0, parameter: $0.1) }
        for (key, child) in namedChildren() {
            result += child.namedParameters(prefix: prefix + key + ".")
        }
        return result
    }

    /// Every parameter tensor with its full name.
    public func parameters() -> [(name: String, tensor: Tensor)] {
        namedParameters().map { ($0.name, $0.parameter.tensor!) }
    }

    /// The parameters that currently require gradients.
    public func trainableParameters() -> [(name: String, tensor: Tensor)] {
        parameters().filter { $0.tensor.requiresGrad }
    }

    /// Total and trainable parameter counts.
    public func parameterCount() -> (total: Int, trainable: Int) {
        parameters().reduce(into: (0, 0)) { counts, entry in
            counts.0 += entry.tensor.elementCount
            if entry.tensor.requiresGrad { counts.1 += entry.tensor.elementCount }
        }
    }

    /// Sets training mode on this module and every child.
    public func train(_ training: Bool = true) {
        isTraining = training
        for (_, child) in namedChildren() { child.train(training) }
    }

    /// Sets inference mode (``train(_:)`` with `false`).
    public func eval() { train(false) }

    /// Stored properties as (label without a property wrapper's underscore, value).
    private func reflectedProperties() -> [(String, Any)] {
        var result: [(String, Any)] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        while let current = mirror {
            for child in current.children {
                guard var label = child.label else { continue }
                if label.hasPrefix("_") { label.removeFirst() }
                result.append((Self.checkpointKeys[label] ?? label, child.value))
            }
            mirror = current.superclassMirror
        }
        return result
    }
}

/// A trainable (or frozen) tensor owned by a module.
///
/// `Value` is `Tensor`, or `Tensor?` for parameters that a configuration may leave out (a bias).
@propertyWrapper
public final class Param<Value>: ParameterSlot {
    /// The tensor; replaced when weights are loaded.
    public var wrappedValue: Value

    public init(wrappedValue: Value) {
        ensure(Value.self == Tensor.self || Value.self == Tensor?.self, "@Param holds a Tensor or a Tensor?")
        self.wrappedValue = wrappedValue
    }

    public var tensor: Tensor? {
        get { wrappedValue as? Tensor }
        set {
            guard let newValue else { fatalError("a parameter cannot be removed") }
            wrappedValue = newValue as! Value
        }
    }
}

/// Type-erased access to a module's parameter, whatever its optionality.
public protocol ParameterSlot: AnyObject {
    /// The tensor, or `nil` for an absent optional parameter.
    var tensor: Tensor? { get set }
}
