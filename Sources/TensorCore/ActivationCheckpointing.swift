/// Activation checkpointing (`torch.utils.checkpoint`): runs `body` without keeping its
/// intermediate tensors, and runs it again during the backward pass to get its gradients. Memory
/// falls from every intermediate of `body` to its inputs and output; compute rises by one more
/// forward pass of `body`.
///
/// - Parameters:
///   - inputs: the tensors `body` reads that gradients flow back to (e.g. the hidden states).
///   - parameters: the leaf tensors `body` reads (a layer's weights). Their gradients are
///     accumulated into their ``Tensor/grad`` when the backward pass reaches this point, as
///     without checkpointing.
///   - body: a deterministic function of `inputs` (and of the captured `parameters` and constants).
///     It runs twice, so it must not mutate state (no KV cache writes, no random draws).
/// - Returns: `body(inputs)`, recorded as one operation.
///
/// Gradients equal the ones without checkpointing up to the order of floating-point sums inside
/// `body` (the recomputed forward is bit-identical; tests bound the difference).
public func checkpointed(_ inputs: [Tensor], parameters: [Tensor], _ body: @escaping ([Tensor]) -> Tensor) -> Tensor {
    let trainable = parameters.filter(\.requiresGrad)
    guard Autograd.needsGraph(inputs + trainable) else { return body(inputs) }
    let output = withNoGrad { body(inputs) }
    let saved = inputs.map { $0.detached() }
    let needs = inputs.map(\.requiresGrad)
    output.recordOperation("checkpointed", inputs: inputs + trainable) { outputGradient in
        // The engine runs rules without recording; the recomputation must record its own graph.
        let leaves = zip(saved, needs).map { tensor, needsGradient -> Tensor in
            let leaf = tensor.detached()
            leaf.requiresGrad = needsGradient
            return leaf
        }
        Autograd.$isGradientEnabled.withValue(true) {
            let recomputed = body(leaves)
            if recomputed.requiresGrad { recomputed.backward(gradient: outputGradient) }
        }
        // Parameters received theirs in the nested pass (they are leaves of both graphs).
        return leaves.map { $0.requiresGrad ? $0.grad : nil } + trainable.map { _ in nil }
    }
    return output
}
