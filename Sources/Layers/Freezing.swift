import TensorCore

/// A pattern over dotted parameter names: `*` matches within one component, `**` across
/// components (`language_model.**.cross_attn.*`), anything else matches literally.
public struct NamePattern: Sendable, CustomStringConvertible {
    public let pattern: String
    private let components: [String]

    public init(_ pattern: String) {
        self.pattern = pattern
        self.components = pattern.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    }

    /// Whether `name` matches the whole pattern.
    public func matches(_ name: String) -> Bool {
        Self.match(components[...], name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)[...])
    }

    public var description: String { pattern }

    private static func match(_ pattern: ArraySlice<String>, _ name: ArraySlice<String>) -> Bool {
        guard let head = pattern.first else { return name.isEmpty }
        if head == "**" {
            // Zero or more whole components.
            for skip in 0...name.count where match(pattern.dropFirst(), name.dropFirst(skip)) { return true }
            return false
        }
        guard let first = name.first, componentMatches(head, first) else { return false }
        return match(pattern.dropFirst(), name.dropFirst())
    }

    /// Glob match of one component, where `*` matches any run of characters.
    private static func componentMatches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern), t = Array(text)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count && p[pi] != "*" && p[pi] == t[ti] {
                pi += 1; ti += 1
            } else if pi < p.count && p[pi] == "*" {
                star = pi; mark = ti; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}

extension Module {
    /// Freezes everything, then makes the parameters matching `patterns` trainable: each becomes an
    /// owned float32 copy (float64 stays float64) that requires gradients — a loaded weight may be
    /// bf16 or a read-only mapping, and optimisers update in place.
    /// - Returns: the names made trainable, in declaration order.
    @discardableResult
    public func makeTrainable(matching patterns: [String]) -> [String] {
        freeze()
        let compiled = patterns.map(NamePattern.init)
        var names: [String] = []
        for (name, slot) in namedParameters() where compiled.contains(where: { $0.matches(name) }) {
            let tensor = slot.tensor!
            let owned = tensor.dtype == .float64 && !tensor.storage.isBorrowed ? tensor.detached()
                : (tensor.dtype == .float32 ? tensor.copy() : tensor.converted(to: .float32)).detached()
            owned.requiresGrad = true
            slot.tensor = owned
            names.append(name)
        }
        return names
    }

    /// Stops gradients for every parameter whose name matches one of `patterns` (all when empty).
    /// Frozen parameters allocate no gradient buffers and record no graph.
    /// - Returns: the names frozen.
    @discardableResult
    public func freeze(matching patterns: [String] = []) -> [String] {
        setRequiresGrad(false, matching: patterns)
    }

    /// Lets gradients flow to every float parameter whose name matches one of `patterns` (all when empty).
    /// - Returns: the names unfrozen.
    @discardableResult
    public func unfreeze(matching patterns: [String] = []) -> [String] {
        setRequiresGrad(true, matching: patterns)
    }

    private func setRequiresGrad(_ value: Bool, matching patterns: [String]) -> [String] {
        let compiled = patterns.map(NamePattern.init)
        var changed: [String] = []
        for (name, parameter) in namedParameters()
        where compiled.isEmpty || compiled.contains(where: { $0.matches(name) }) {
            let tensor = parameter.tensor!
            if value {
                ensure(tensor.dtype.isComputeType,
                             "cannot train '\(name)': it is stored as \(tensor.dtype); convert it to float32 first")
            } else {
                tensor.grad = nil
            }
            tensor.requiresGrad = value
            changed.append(name)
        }
        return changed
    }
}
