import TensorCore

/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, as `torch.optim.AdamW`.
///
/// For each parameter θ with gradient g at step t (learning rate η):
/// ```
/// θ ← θ − η·λ·θ                      (decoupled weight decay)
/// m ← β₁·m + (1−β₁)·g,  v ← β₂·v + (1−β₂)·g²
/// θ ← θ − η · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
/// ```
/// Parameters without a gradient are skipped (their step count does not advance, as torch's
/// per-parameter `step`).
///
/// **Bound to parameter slots, not tensors.** The optimiser holds each parameter's ``ParameterSlot``
/// (the module's `@Param`) and reads the slot's current tensor at every step. Loading weights or
/// ``MllamaForConditionalGeneration/setTrainable(_:)`` replace a slot's tensor; an optimiser that
/// kept the old tensor objects would silently update nothing while the model's gradients piled up.
/// Moments and step counts are keyed by parameter name, so they can be saved and restored
/// (``stateTensors()``, ``restoreState(tensors:stepCounts:)``).
///
/// ```swift
/// model.setTrainable([.projector])
/// let optimizer = AdamW(module: model, learningRate: 1e-4)   // every parameter that requires gradients
/// loss.backward(); optimizer.step(); optimizer.zeroGradients()
/// ```
public final class AdamW {
    /// One optimised parameter: its name, the slot it lives in, and its weight decay λ.
    public struct Binding {
        public let name: String
        public let slot: any ParameterSlot
        public let weightDecay: Double

        /// The slot's current tensor.
        public var tensor: Tensor { slot.tensor! }
    }

    /// The optimised parameters, in a stable order.
    public let bindings: [Binding]
    /// The learning rate of the next step (set it from a schedule before each step).
    public var learningRate: Double
    /// Factors on ``learningRate`` by parameter name (absent: 1), e.g. a faster projector.
    public var learningRateScales: [String: Double] = [:]
    public let beta1: Double, beta2: Double, epsilon: Double
    /// First and second moment estimates and step counts, by parameter name.
    public private(set) var firstMoments: [String: Tensor] = [:]
    public private(set) var secondMoments: [String: Tensor] = [:]
    public private(set) var stepCounts: [String: Int] = [:]

    /// Optimises every parameter of `module` that requires gradients now.
    ///
    /// - Parameters:
    ///   - weightDecay: λ for every parameter except those matching `noDecay` (name patterns, e.g.
    ///     `["**.bias", "**norm*"]`), which get 0.
    public convenience init(module: Module, learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                            epsilon: Double = 1e-8, weightDecay: Double = 0.01, noDecay: [String] = []) {
        let exempt = noDecay.map(NamePattern.init)
        let slots = module.namedParameters().filter { $0.parameter.tensor?.requiresGrad == true }
        self.init(slots: slots.map { entry in
                      (name: entry.name, slot: entry.parameter,
                       weightDecay: exempt.contains { $0.matches(entry.name) } ? 0 : weightDecay) },
                  learningRate: learningRate, betas: betas, epsilon: epsilon)
    }

    /// Optimises the given slots (for parameters outside a module, wrap each tensor in a ``Param``).
    public init(slots: [(name: String, slot: any ParameterSlot, weightDecay: Double)], learningRate: Double = 1e-3,
                betas: (Double, Double) = (0.9, 0.999), epsilon: Double = 1e-8) {
        var seen = Set<String>()
        for (name, slot, _) in slots {
            ensure(seen.insert(name).inserted, "AdamW: the parameter name '\(name)' appears twice")
            Self.check(name: name, slot.tensor)
        }
        bindings = slots.map { Binding(name: $0.name, slot: $0.slot, weightDecay: $0.weightDecay) }
        self.learningRate = learningRate
        beta1 = betas.0
        beta2 = betas.1
        self.epsilon = epsilon
    }

    private static func check(name: String, _ tensor: Tensor?) {
        guard let tensor else { fatalError("AdamW: '\(name)' has no tensor") }
        ensure(tensor.requiresGrad && tensor.dtype.isComputeType && tensor.isContiguous,
               "AdamW: '\(name)' must be a contiguous float tensor that requires gradients (\(tensor)); was it frozen after the optimiser was built?")
        ensure(!tensor.storage.isBorrowed, "AdamW: '\(name)' views read-only memory; make it trainable (an owned copy) first")
    }

    /// The optimised parameters' current tensors, by name (for clipping and checkpoints).
    public var parameters: [(name: String, tensor: Tensor)] { bindings.map { ($0.name, $0.tensor) } }

    /// Applies one update to every parameter that has a gradient. Does not clear gradients.
    public func step() {
        withNoGrad {
            for binding in bindings {
                let parameter = binding.tensor
                Self.check(name: binding.name, parameter)
                guard let gradient = parameter.grad else { continue }
                let name = binding.name
                let m = firstMoments[name] ?? parameter.zerosLike()
                let v = secondMoments[name] ?? parameter.zerosLike()
                firstMoments[name] = m
                secondMoments[name] = v
                let t = (stepCounts[name] ?? 0) + 1
                stepCounts[name] = t
                let g = gradient.contiguous()
                let settings = UpdateSettings(
                    learningRate: learningRate * (learningRateScales[name] ?? 1), weightDecay: binding.weightDecay,
                    beta1: beta1, beta2: beta2,
                    epsilon: epsilon, biasCorrection1: 1 - Double.pow(beta1, Double(t)),
                    biasCorrection2: 1 - Double.pow(beta2, Double(t)))
                dispatchFloat(parameter.dtype, "AdamW",
                              float: { update(parameter, g, m, v, settings, Float.self) },
                              double: { update(parameter, g, m, v, settings, Double.self) })
            }
        }
    }

    /// Clears the gradients of every optimised parameter (`set_to_none`: buffers are freed).
    public func zeroGradients() {
        for binding in bindings { binding.slot.tensor?.grad = nil }
    }

    // MARK: - State by name

    /// The moments as named tensors, `NAME.exp_avg` and `NAME.exp_avg_sq` (torch's state keys), for
    /// parameters that have been stepped at least once.
    public func stateTensors() -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for (name, m) in firstMoments { tensors[name + ".exp_avg"] = m }
        for (name, v) in secondMoments { tensors[name + ".exp_avg_sq"] = v }
        return tensors
    }

    /// Restores moments and step counts saved by ``stateTensors()`` and ``stepCounts``.
    ///
    /// - Throws: ``OptimizerStateError`` naming a moment whose parameter is not optimised here, a
    ///   parameter with a step count but no moments (or the reverse), or a shape that differs.
    public func restoreState(tensors: [String: Tensor], stepCounts counts: [String: Int]) throws {
        let byName = Dictionary(uniqueKeysWithValues: bindings.map { ($0.name, $0) })
        var first: [String: Tensor] = [:], second: [String: Tensor] = [:]
        for (key, tensor) in tensors {
            let isSecond = key.hasSuffix(".exp_avg_sq")
            guard isSecond || key.hasSuffix(".exp_avg") else {
                throw OptimizerStateError("'\(key)' is not an AdamW state tensor (NAME.exp_avg or NAME.exp_avg_sq)")
            }
            let name = String(key.dropLast(isSecond ? ".exp_avg_sq".count : ".exp_avg".count))
            guard let binding = byName[name] else {
                throw OptimizerStateError("the saved state has moments for '\(name)', which this optimiser does not train")
            }
            guard tensor.shape == binding.tensor.shape else {
                throw OptimizerStateError("'\(key)' has shape \(tensor.shape); the parameter has \(binding.tensor.shape)")
            }
            let owned = (tensor.dtype == binding.tensor.dtype ? tensor.copy() : tensor.converted(to: binding.tensor.dtype)).detached()
            if isSecond { second[name] = owned } else { first[name] = owned }
        }
        for name in Set(first.keys).union(second.keys).union(counts.keys)
        where first[name] == nil || second[name] == nil || counts[name] == nil {
            throw OptimizerStateError("the saved state of '\(name)' is incomplete (needs exp_avg, exp_avg_sq and a step count)")
        }
        firstMoments = first
        secondMoments = second
        stepCounts = counts
    }
}

/// Saved optimiser state that does not fit the optimiser it is restored into.
public struct OptimizerStateError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

private struct UpdateSettings {
    var learningRate, weightDecay, beta1, beta2, epsilon, biasCorrection1, biasCorrection2: Double
}

/// The fused, in-place AdamW update of one parameter.
private func update<T: ComputeScalar>(_ parameter: Tensor, _ gradient: Tensor, _ m: Tensor, _ v: Tensor,
                                      _ s: UpdateSettings, _: T.Type) {
    let theta = parameter.pointer(as: T.self), g = gradient.pointer(as: T.self)
    let m1 = m.pointer(as: T.self), m2 = v.pointer(as: T.self)
    let decay = T(1 - s.learningRate * s.weightDecay)
    let b1 = T(s.beta1), b2 = T(s.beta2)
    let stepSize = T(s.learningRate / s.biasCorrection1)
    let correction2 = T(s.biasCorrection2.squareRoot())
    let eps = T(s.epsilon)
    Parallel.forEachRange(parameter.elementCount, grain: 65_536) { range in
        for i in range {
            let gi = g[i]
            let mi = b1 * m1[i] + (1 - b1) * gi
            let vi = b2 * m2[i] + (1 - b2) * gi * gi
            m1[i] = mi
            m2[i] = vi
            theta[i] = theta[i] * decay - stepSize * mi / (vi.squareRoot() / correction2 + eps)
        }
    }
}
