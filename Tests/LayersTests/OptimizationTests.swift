import Testing
import TensorCore
import Layers
import _TestSupport

@Suite("Optimisation: AdamW, clipping, schedules")
struct OptimizationTests {
    /// Three AdamW steps (lr 0.1, weight decay 0.1, betas (0.9, 0.999), eps 1e-8) from
    /// θ₀ = [0.5, −1, 2, 0] with gradients g₁ = [0.1, −0.2, 0.3, 0], g₂ = [0.5, 0.5, −0.5, 1],
    /// g₃ = [−1, 0.25, 0, 2]. Expected values from `torch.optim.AdamW` in float64 (PyTorch 2.15).
    @Test("AdamW reproduces torch.optim.AdamW step for step")
    func adamWMatchesTorch() {
        let theta = Tensor([0.5, -1.0, 2.0, 0.0], shape: [4], requiresGrad: true)
        let optimizer = AdamW(slots: loose([("theta", theta)], weightDecay: 0.1), learningRate: 0.1)
        for g in [[0.1, -0.2, 0.3, 0.0], [0.5, 0.5, -0.5, 1.0], [-1.0, 0.25, 0.0, 2.0]] {
            theta.grad = Tensor(g, shape: [4])
            optimizer.step()
        }
        let expected = [0.328589600014486, -0.973981868261997, 1.89434292737167, -0.15652680671658]
        #expect(errors(theta.doubles(), expected).maxAbs < 1e-12)
        #expect(optimizer.stepCounts["theta"] == 3)
    }

    @Test("AdamW in float32 agrees with float64 and skips parameters without gradients")
    func adamWFloat() {
        let a = Tensor([0.5, -1, 2, 0] as [Float], shape: [4], requiresGrad: true)
        let idle = Tensor([1, 2] as [Float], shape: [2], requiresGrad: true)
        let optimizer = AdamW(slots: loose([("a", a), ("idle", idle)], weightDecay: 0.1), learningRate: 0.1)
        for g in [[0.1, -0.2, 0.3, 0.0], [0.5, 0.5, -0.5, 1.0], [-1.0, 0.25, 0.0, 2.0]] as [[Float]] {
            a.grad = Tensor(g, shape: [4])
            optimizer.step()
        }
        #expect(errors(a.doubles(), [0.328589600014486, -0.973981868261997, 1.89434292737167, -0.15652680671658]).maxAbs < 5e-6, "float32 rounding of values near 2 is 2.4e-7 per operation")
        #expect(idle.floats() == [1, 2])
        optimizer.zeroGradients()
        #expect(a.grad == nil)
    }

    /// Gradients [3, 4] and [12]: global norm √(9 + 16 + 144) = 13; clipping to 6.5 halves them
    /// (up to torch's 1e-6 in the denominator).
    @Test("global-norm clipping scales all gradients by maxNorm / norm and reports the norm")
    func clipping() {
        let a = Tensor([0, 0] as [Float], shape: [2], requiresGrad: true)
        let b = Tensor([0] as [Float], shape: [1], requiresGrad: true)
        a.grad = Tensor([3, 4] as [Float], shape: [2])
        b.grad = Tensor([12] as [Float], shape: [1])
        let norm = clipGradientNorm([("a", a), ("b", b)], maxNorm: 6.5)
        #expect(abs(norm - 13) < 1e-6)
        #expect(errors(a.grad!.doubles(), [1.5, 2]).maxAbs < 1e-5)
        #expect(errors(b.grad!.doubles(), [6]).maxAbs < 1e-5)
        // Below the threshold nothing changes.
        _ = clipGradientNorm([("a", a), ("b", b)], maxNorm: 100)
        #expect(errors(b.grad!.doubles(), [6]).maxAbs < 1e-5)
        // A non-finite gradient is reported, not hidden.
        b.grad = Tensor([.nan] as [Float], shape: [1])
        #expect(clipGradientNorm([("a", a), ("b", b)], maxNorm: 1).isNaN)
    }

    /// Reference multipliers from transformers' `get_cosine_schedule_with_warmup(opt, 3, 10)` and
    /// `get_linear_schedule_with_warmup(opt, 3, 10)` for steps 0…10.
    @Test("warm-up, cosine and linear schedules match transformers")
    func schedules() {
        let cosine = [0, 0.333333333333, 0.666666666667, 1, 0.950484433951, 0.811744900929, 0.611260466978,
                      0.388739533022, 0.188255099071, 0.0495155660488, 0]
        let linear = [0, 0.333333333333, 0.666666666667, 1, 0.857142857143, 0.714285714286, 0.571428571429,
                      0.428571428571, 0.285714285714, 0.142857142857, 0]
        let c = LearningRateSchedule.cosine(peak: 2, warmupSteps: 3, totalSteps: 10)
        let l = LearningRateSchedule.linear(peak: 2, warmupSteps: 3, totalSteps: 10)
        for step in 0...10 {
            #expect(abs(c.learningRate(at: step) - 2 * cosine[step]) < 1e-9, "cosine step \(step)")
            #expect(abs(l.learningRate(at: step) - 2 * linear[step]) < 1e-9, "linear step \(step)")
        }
        #expect(LearningRateSchedule.constant(peak: 0.5).learningRate(at: 1000) == 0.5)
        #expect(LearningRateSchedule.constantWithWarmup(peak: 1, warmupSteps: 4).learningRate(at: 2) == 0.5)
        #expect(LearningRateSchedule.cosine(peak: 1, warmupSteps: 0, totalSteps: 10, minimum: 0.1).learningRate(at: 50) == 0.1)
    }

    @Test("a tiny network learns a non-linear function to near-zero loss")
    func tinyNetworkLearns() {
        var generator = RandomGenerator(seed: 42)
        let first = Linear(inFeatures: 1, outFeatures: 32, generator: &generator)
        let second = Linear(inFeatures: 32, outFeatures: 1, generator: &generator)
        // y = sin(2x) on [-2, 2].
        let xs = (0..<64).map { -2 + 4 * Double($0) / 63 }
        let x = Tensor(xs.map { Float($0) }, shape: [64, 1])
        let y = Tensor(xs.map { Float(Double.sin(2 * $0)) }, shape: [64, 1])
        let parameters = [("w1", first.weight), ("b1", first.bias!), ("w2", second.weight), ("b2", second.bias!)]
        let optimizer = AdamW(slots: loose(parameters, weightDecay: 0), learningRate: 0.01)
        var initialLoss = 0.0, loss = 0.0
        for step in 0..<1500 {
            let prediction = second(first(x).tanh())
            let error = (prediction - y).squared().mean()
            loss = error.item()
            if step == 0 { initialLoss = loss }
            error.backward()
            optimizer.step()
            optimizer.zeroGradients()
        }
        #expect(initialLoss > 0.1)
        #expect(loss < 1e-3, "final loss \(loss)")
    }
}

/// Loose tensors as optimiser slots.
private func loose(_ tensors: [(String, Tensor)], weightDecay: Double) -> [(name: String, slot: any ParameterSlot, weightDecay: Double)] {
    tensors.map { (name: $0.0, slot: Param(wrappedValue: $0.1), weightDecay: weightDecay) }
}
