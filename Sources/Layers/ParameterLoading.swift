import TensorCore

/// Why a set of tensors could not be loaded into a module. Lists every offending name at once.
public struct ParameterLoadError: Error, CustomStringConvertible {
    /// Parameters the module has and the tensors lack.
    public var missing: [String] = []
    /// Tensors the module has no parameter for.
    public var unexpected: [String] = []
    /// Names whose shapes disagree, with both shapes.
    public var mismatchedShapes: [(name: String, expected: [Int], found: [Int])] = []
    /// Where the tensors came from (a checkpoint path), for the message.
    public var source: String

    public var description: String {
        var lines = ["cannot load parameters from \(source):"]
        if !missing.isEmpty { lines.append("  missing (\(missing.count)): \(missing.sorted().joined(separator: ", "))") }
        if !unexpected.isEmpty { lines.append("  unexpected (\(unexpected.count)): \(unexpected.sorted().joined(separator: ", "))") }
        for entry in mismatchedShapes {
            lines.append("  shape mismatch: \(entry.name) expects \(entry.expected), found \(entry.found)")
        }
        return lines.joined(separator: "\n")
    }

    var isEmpty: Bool { missing.isEmpty && unexpected.isEmpty && mismatchedShapes.isEmpty }
}

extension Module {
    /// Replaces this module's parameters with `tensors`, keyed by full parameter name.
    ///
    /// Loading is strict: every parameter must be present with the same shape, and (when `strict`)
    /// no tensor may be left over. Frozen parameters take the tensor as given, so a bfloat16 or
    /// memory-mapped weight stays as it is; trainable parameters get a float32 copy of their own
    /// (mapped memory is read-only, and optimisers update in place).
    /// - Throws: ``ParameterLoadError`` listing all missing, unexpected and mis-shaped names.
    public func loadParameters(_ tensors: [String: Tensor], strict: Bool = true, source: String = "tensors") throws {
        var problems = ParameterLoadError(source: source)
        let named = namedParameters()
        for (name, parameter) in named {
            guard let tensor = tensors[name] else { problems.missing.append(name); continue }
            if tensor.shape != parameter.tensor!.shape {
                problems.mismatchedShapes.append((name, parameter.tensor!.shape, tensor.shape))
            }
        }
        if strict {
            let known = Set(named.map(\.name))
            problems.unexpected = tensors.keys.filter { !known.contains($0) }
        }
        guard problems.isEmpty else { throw problems }
        for (name, parameter) in named {
            let tensor = tensors[name]!
            let trainable = parameter.tensor!.requiresGrad
            if trainable {
                let owned = tensor.dtype == .float32 ? tensor.copy() : tensor.converted(to: .float32).detached()
                owned.requiresGrad = true
                parameter.tensor = owned
            } else {
                parameter.tensor = tensor.detached()
            }
        }
    }

    /// Replaces some parameters (a trained subset, e.g. from a run checkpoint) and leaves the rest
    /// as they are. Every name must be a parameter of this module with the same shape. A parameter
    /// that requires gradients gets an owned copy in its current dtype; a frozen one takes the tensor.
    /// - Throws: ``ParameterLoadError`` listing unknown and mis-shaped names.
    public func updateParameters(_ tensors: [String: Tensor], source: String = "tensors") throws {
        var problems = ParameterLoadError(source: source)
        let named = Dictionary(uniqueKeysWithValues: namedParameters().map { ($0.name, $0.parameter) })
        for (name, tensor) in tensors.sorted(by: { $0.key < $1.key }) {
            guard let slot = named[name] else { problems.unexpected.append(name); continue }
            if tensor.shape != slot.tensor!.shape { problems.mismatchedShapes.append((name, slot.tensor!.shape, tensor.shape)) }
        }
        guard problems.isEmpty else { throw problems }
        for (name, tensor) in tensors {
            let slot = named[name]!, current = slot.tensor!
            if current.requiresGrad {
                let owned = (tensor.dtype == current.dtype ? tensor.copy() : tensor.converted(to: current.dtype)).detached()
                owned.requiresGrad = true
                slot.tensor = owned
            } else {
                slot.tensor = tensor.detached()
            }
        }
    }
}
