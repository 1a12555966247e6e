import Foundation

/// A learning rate as a function of the optimiser step (0-based), as the schedules of
/// `transformers.get_scheduler` define them.
public enum LearningRateSchedule: Sendable, Codable, Equatable {
    /// The peak rate at every step.
    case constant(peak: Double)
    /// Linear warm-up from 0 over `warmupSteps`, then constant.
    case constantWithWarmup(peak: Double, warmupSteps: Int)
    /// Linear warm-up, then linear decay to 0 at `totalSteps`.
    case linear(peak: Double, warmupSteps: Int, totalSteps: Int)
    /// Linear warm-up, then half a cosine from the peak down to `minimum` at `totalSteps`.
    case cosine(peak: Double, warmupSteps: Int, totalSteps: Int, minimum: Double = 0)

    /// The learning rate at `step`.
    public func learningRate(at step: Int) -> Double {
        switch self {
        case .constant(let peak):
            return peak
        case .constantWithWarmup(let peak, let warmup):
            return step < warmup ? peak * Double(step) / Double(max(1, warmup)) : peak
        case .linear(let peak, let warmup, let total):
            if step < warmup { return peak * Double(step) / Double(max(1, warmup)) }
            return peak * max(0, Double(total - step) / Double(max(1, total - warmup)))
        case .cosine(let peak, let warmup, let total, let minimum):
            if step < warmup { return peak * Double(step) / Double(max(1, warmup)) }
            let progress = min(1, Double(step - warmup) / Double(max(1, total - warmup)))
            return minimum + (peak - minimum) * 0.5 * (1 + cos(Double.pi * progress))
        }
    }
}
