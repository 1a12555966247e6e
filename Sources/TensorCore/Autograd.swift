/// Reverse-mode automatic differentiation.
///
/// Each operation whose inputs need gradients records a ``GraphNode``: where its gradient goes (the
/// nodes of its inputs, or the leaf tensors themselves) and a closure that maps the gradient of its
/// output to the gradients of its inputs. The closure captures exactly what the backward needs
/// (documented beside each op), and is dropped as soon as it has run, so memory is released as the
/// backward pass walks the graph.

/// A recorded operation in the autograd graph.
public final class GraphNode: @unchecked Sendable {
    /// Where one input's gradient goes.
    enum Edge {
        /// The input does not need a gradient.
        case none
        /// The input is a leaf: accumulate into its ``Tensor/grad``.
        case leaf(Tensor)
        /// The input was produced by another recorded operation.
        case node(GraphNode)
    }

    /// The operation's name, for error messages.
    public let operation: String
    let edges: [Edge]
    /// The output's shape, to check the incoming gradient.
    let outputShape: [Int]
    /// Maps the output's gradient to one gradient per input (`nil` where the input needs none).
    /// Set to `nil` once run: the graph is freed as it is walked.
    var backward: ((Tensor) -> [Tensor?])?

    init(operation: String, edges: [Edge], outputShape: [Int], backward: @escaping (Tensor) -> [Tensor?]) {
        self.operation = operation
        self.edges = edges
        self.outputShape = outputShape
        self.backward = backward
    }
}

/// Global switches of the autograd engine.
public enum Autograd {
    @TaskLocal static var isGradientEnabled = true

    /// Whether operations currently record graphs (false inside ``withNoGrad(_:)``).
    public static var isRecording: Bool { isGradientEnabled }

    /// Whether an operation on these inputs must record a graph node.
    @inlinable
    public static func needsGraph(_ inputs: Tensor...) -> Bool {
        isRecording && inputs.contains { $0.requiresGrad }
    }

    /// Whether an operation on these inputs must record a graph node.
    public static func needsGraph(_ inputs: [Tensor]) -> Bool {
        isRecording && inputs.contains { $0.requiresGrad }
    }
}

/// Runs `body` without recording any autograd graph (inference, optimiser updates, backward rules).
public func withNoGrad<Result>(_ body: () throws -> Result) rethrows -> Result {
    try Autograd.$isGradientEnabled.withValue(false, operation: body)
}

extension Tensor {
    /// A view of the same storage with no autograd history: gradients do not flow through it.
    public func detached() -> Tensor {
        Tensor(storage: storage, dtype: dtype, shape: shape, strides: strides, offset: offset)
    }

    /// Marks `self`, the fresh output of an operation on `inputs`, as produced by that operation.
    ///
    /// Call it only when ``Autograd/needsGraph(_:)-(Tensor...)`` is true. `backward` receives the
    /// gradient of `self` (same shape) and returns one gradient per input, in order, each of that
    /// input's shape, or `nil` for inputs that do not require gradients. It must not capture `self`
    /// (capture `self.detached()` instead), or the output would keep its own graph alive. Each
    /// returned gradient must be either a new tensor or a view of the output gradient (never a saved
    /// tensor): the engine takes ownership of new buffers and accumulates into them in place.
    public func recordOperation(_ operation: String, inputs: [Tensor],
                                backward: @escaping (_ outputGradient: Tensor) -> [Tensor?]) {
        let edges: [GraphNode.Edge] = inputs.map { input in
            guard input.requiresGrad else { return .none }
            if let node = input.gradFunction { return .node(node) }
            return .leaf(input)
        }
        gradFunction = GraphNode(operation: operation, edges: edges, outputShape: shape, backward: backward)
        requiresGrad = true
    }

    /// Computes the gradient of this tensor with respect to every leaf that requires gradients and
    /// adds it to the leaf's ``grad`` (so gradients accumulate across micro-batches until zeroed).
    ///
    /// - Parameters:
    ///   - gradient: the gradient of some scalar with respect to this tensor; defaults to 1 for a
    ///     single-element tensor (a loss).
    ///   - retainGraph: keep the graph so that a second backward pass can run through it.
    /// - Precondition: the graph has not been freed by an earlier backward pass.
    public func backward(gradient: Tensor? = nil, retainGraph: Bool = false) {
        ensure(requiresGrad, "backward() on a tensor that does not require gradients \(shape)")
        let seed: Tensor
        if let gradient {
            ensure(gradient.shape == shape,
                         "backward gradient of shape \(gradient.shape) does not match the tensor's shape \(shape)")
            seed = gradient
        } else {
            ensure(elementCount == 1,
                         "backward() without a gradient needs a single-element tensor (a loss), got shape \(shape)")
            seed = Tensor.filled(1, shape: shape, dtype: dtype)
        }
        withNoGrad {
            guard let root = gradFunction else {
                accumulateIntoLeaf(self, seed)
                return
            }
            runBackward(from: root, seed: seed, retainGraph: retainGraph)
        }
    }
}

/// Adds `gradient` into `leaf.grad`, creating the buffer on first use. An `owned` gradient (a buffer
/// nothing else refers to) becomes the leaf's gradient as it is; any other is copied, since a rule
/// may hand the same tensor to several inputs.
private func accumulateIntoLeaf(_ leaf: Tensor, _ gradient: Tensor, owned: Bool = false) {
    ensure(gradient.shape == leaf.shape,
                 "gradient of shape \(gradient.shape) for a leaf of shape \(leaf.shape)")
    if let existing = leaf.grad {
        existing.addInPlace(gradient)
    } else {
        leaf.grad = owned && gradient.dtype == leaf.dtype ? gradient : gradient.copy()
    }
}

/// Whether a gradient returned by a backward rule is a fresh buffer the engine may keep and add
/// into: it fills its own storage exactly and shares it with neither the output gradient nor the
/// rule's other results.
private func isFreshBuffer(_ gradient: Tensor, outputGradient: Tensor, siblings: [Tensor?]) -> Bool {
    guard gradient.isContiguous, gradient.offset == 0, !gradient.storage.isBorrowed,
          gradient.elementCount * gradient.dtype.byteSize == gradient.storage.byteCount,
          gradient.storage !== outputGradient.storage else { return false }
    return siblings.filter { $0?.storage === gradient.storage }.count == 1
}

/// Walks the graph below `root` in reverse topological order.
private func runBackward(from root: GraphNode, seed: Tensor, retainGraph: Bool) {
    // Iterative depth-first post-order: graphs of deep models are too deep for recursion.
    var order: [GraphNode] = []
    var visited = Set<ObjectIdentifier>()
    var stack: [(GraphNode, Bool)] = [(root, false)]
    while let (node, expanded) = stack.popLast() {
        if expanded { order.append(node); continue }
        guard visited.insert(ObjectIdentifier(node)).inserted else { continue }
        stack.append((node, true))
        for edge in node.edges {
            if case .node(let child) = edge, !visited.contains(ObjectIdentifier(child)) {
                stack.append((child, false))
            }
        }
    }

    // Gradients waiting for their node; `owned` marks sums this walk allocated (safe to add into).
    var pending: [ObjectIdentifier: (gradient: Tensor, owned: Bool)] = [ObjectIdentifier(root): (seed, false)]
    for node in order.reversed() {
        guard let outputGradient = pending.removeValue(forKey: ObjectIdentifier(node))?.gradient else { continue }
        guard let rule = node.backward else {
            fatalError(
                "backward through the graph of '\(node.operation)' a second time: its saved tensors were freed "
                + "by the first backward pass (pass retainGraph: true to the first call to keep them)")
        }
        ensure(outputGradient.shape == node.outputShape,
                     "internal: gradient of shape \(outputGradient.shape) for '\(node.operation)' output \(node.outputShape)")
        let inputGradients = rule(outputGradient)
        if !retainGraph { node.backward = nil }
        ensure(inputGradients.count == node.edges.count,
                     "internal: '\(node.operation)' returned \(inputGradients.count) gradients for \(node.edges.count) inputs")
        for (edge, gradient) in zip(node.edges, inputGradients) {
            guard let gradient else { continue }
            let fresh = isFreshBuffer(gradient, outputGradient: outputGradient, siblings: inputGradients)
            switch edge {
            case .none:
                continue
            case .leaf(let leaf):
                accumulateIntoLeaf(leaf, gradient, owned: fresh)
            case .node(let child):
                let key = ObjectIdentifier(child)
                if let (existing, owned) = pending[key] {
                    if owned {
                        existing.addInPlace(gradient)
                    } else if fresh && gradient.shape == existing.shape {
                        pending[key] = (gradient.addingInPlace(existing), true)
                    } else {
                        pending[key] = (existing.copy().addingInPlace(gradient), true)
                    }
                } else {
                    pending[key] = (gradient, fresh)
                }
            }
        }
    }
}
