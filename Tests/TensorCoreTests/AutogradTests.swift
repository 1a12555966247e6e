import Testing
import TensorCore
import _TestSupport

@Suite("Autograd engine")
struct AutogradTests {
    @Test("gradients of two micro-batches accumulate to the gradient of their summed loss")
    func accumulation() {
        let w = randomFloats([4, 3], seed: 1, requiresGrad: true)
        let first = randomFloats([5, 3], seed: 2), second = randomFloats([2, 3], seed: 3)
        first.linear(weight: w).tanh().sum().backward()
        second.linear(weight: w).tanh().sum().backward()
        let accumulated = w.grad!.doubles()
        w.grad = nil
        (first.linear(weight: w).tanh().sum() + second.linear(weight: w).tanh().sum()).backward()
        #expect(errors(accumulated, w.grad!.doubles()).maxAbs < 1e-5)
    }

    @Test("saved activations are released as soon as the backward pass has used them")
    func memoryReleasedDuringBackward() {
        let x = randomFloats([64], seed: 4, requiresGrad: true)
        weak var savedStorage: Storage?
        let loss: Tensor
        do {
            let activation = x.exp()          // its backward saves the output
            savedStorage = activation.storage
            loss = (activation * 2).sum()     // multiply saves it too
        }
        #expect(savedStorage != nil, "the graph keeps what the backward needs")
        loss.backward()
        #expect(savedStorage == nil, "the backward pass dropped it")
        #expect(x.grad != nil)
    }

    @Test("frozen weights never get a gradient buffer, and the graph skips what needs none")
    func frozenWeightsGetNoGradient() {
        let frozen = randomFloats([4, 3], seed: 5)
        let trainable = randomFloats([3], seed: 6, requiresGrad: true)
        let input = randomFloats([2, 3], seed: 7)
        (input * trainable).linear(weight: frozen).silu().sum().backward()
        #expect(frozen.grad == nil && !frozen.requiresGrad)
        #expect(trainable.grad?.shape == [3])
    }

    @Test("a gradient reaching one tensor along two paths is summed")
    func diamond() {
        let x = randomDoubles([3], seed: 8)
        #expect(gradientCheck([x]) { inputs in
            let shared = inputs[0].tanh()
            return shared * shared + shared.exp()
        } == nil)
    }
}
