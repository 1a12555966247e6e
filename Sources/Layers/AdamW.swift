import TensorCore

/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, as `torch.optim.AdamW`.
///
/// For each parameter θ with gradient g at step t (learning rate η):
/// ```
/// θ ← θ − η·λ·θ                      (decoupled weight decay)
/// m ← β₁·m + (1−β₁)·g,  v ← β₂·v + (1−β₂)·g²
/// θ ← θ − η · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
/// ```
/// Parameters without a gradient are skipped (their step count still advances with the others,
/// as torch's per-parameter `step` does only for parameters that had gradients).
public final class AdamW {
    /// One group of parameters sharing a weight-decay setting.
    public struct Group {
        public var parameters: [(name: String, tensor: Tensor)]
        public var weightDecay: Double
        public init(parameters: [(name: String, tensor: Tensor)], weightDecay: Double) {
            self.parameters = parameters
            self.weightDecay = weightDecay
        }
    }

    /// The parameter groups being optimised.
    public private(set) var groups: [Group]
    /// The learning rate of the next step (set it from a schedule before each step).
    public var learningRate: Double
    public let beta1: Double, beta2: Double, epsilon: Double
    /// First and second moment estimates and step counts, by parameter name.
    public private(set) var firstMoments: [String: Tensor] = [:]
    public private(set) var secondMoments: [String: Tensor] = [:]
    public private(set) var stepCounts: [String: Int] = [:]

    /// - Parameters:
    ///   - parameters: named trainable tensors (e.g. `model.trainableParameters()`).
    ///   - weightDecay: λ, applied to every parameter (use ``init(groups:learningRate:betas:epsilon:)``
    ///     to exempt norms and biases).
    public convenience init(parameters: [(name: String, tensor: Tensor)], learningRate: Double = 1e-3,
                            betas: (Double, Double) = (0.9, 0.999), epsilon: Double = 1e-8, weightDecay: Double = 0.01) {
        self.init(groups: [Group(parameters: parameters, weightDecay: weightDecay)], learningRate: learningRate,
                  betas: betas, epsilon: epsilon)
    }

    public init(groups: [Group], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), epsilon: Double = 1e-8) {
        for group in groups {
            for (name, tensor) in group.parameters {
                ensure(tensor.requiresGrad && tensor.dtype.isComputeType && tensor.isContiguous,
                             "AdamW: '\(name)' must be a contiguous float tensor that requires gradients (\(tensor))")
                ensure(!tensor.storage.isBorrowed, "AdamW: '\(name)' views read-only memory; load it as a trainable copy")
            }
        }
        self.groups = groups
        self.learningRate = learningRate
        self.beta1 = betas.0
        self.beta2 = betas.1
        self.epsilon = epsilon
    }

    /// Applies one update to every parameter that has a gradient. Does not clear gradients.
    public func step() {
        withNoGrad {
            for group in groups {
                for (name, parameter) in group.parameters {
                    guard let gradient = parameter.grad else { continue }
                    let m = firstMoments[name] ?? parameter.zerosLike()
                    let v = secondMoments[name] ?? parameter.zerosLike()
                    firstMoments[name] = m
                    secondMoments[name] = v
                    let t = (stepCounts[name] ?? 0) + 1
                    stepCounts[name] = t
                    let g = gradient.contiguous()
                    let settings = UpdateSettings(
                        learningRate: learningRate, weightDecay: group.weightDecay, beta1: beta1, beta2: beta2,
                        epsilon: epsilon, biasCorrection1: 1 - Double.pow(beta1, Double(t)),
                        biasCorrection2: 1 - Double.pow(beta2, Double(t)))
                    dispatchFloat(parameter.dtype, "AdamW",
                                  float: { update(parameter, g, m, v, settings, Float.self) },
                                  double: { update(parameter, g, m, v, settings, Double.self) })
                }
            }
        }
    }

    /// Clears the gradients of every optimised parameter (`set_to_none`: buffers are freed).
    public func zeroGradients() {
        for group in groups { for (_, tensor) in group.parameters { tensor.grad = nil } }
    }

    /// All optimised parameters.
    public var allParameters: [(name: String, tensor: Tensor)] { groups.flatMap(\.parameters) }
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
