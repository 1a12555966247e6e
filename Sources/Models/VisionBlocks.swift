import Layers
import TensorCore

// Building blocks the ViT image encoders share (Mllama's and CLIP's).
//
// Shapes: n images (or tiles), C channels, P patch side, E width, F MLP width, L tokens.

/// A ViT's patch convolution: a stride-P convolution with kernel P and no bias (`patch_embedding.weight`, `[E, C, P, P]`).
public final class PatchConvolution: Module {
    @Param public var weight: Tensor

    init(width: Int, channels: Int, patchSize: Int, factory: ParameterFactory) {
        weight = factory.normal([width, channels, patchSize, patchSize])
        super.init()
    }

    /// `[n, C, Hpx, Wpx] → [n, patches, E]`, patches row by row.
    func callAsFunction(_ images: Tensor) -> Tensor { patchEmbedding(images, weight: weight) }
}

/// A ViT's feed-forward block: `fc2(act(fc1(x)))`, with biases.
public final class VisionMLP: Module {
    let fc1: Linear
    let fc2: Linear
    let activation: Activation

    init(width: Int, intermediateSize: Int, activation: Activation, factory: ParameterFactory) {
        fc1 = Linear(inFeatures: width, outFeatures: intermediateSize, bias: true, factory: factory)
        fc2 = Linear(inFeatures: intermediateSize, outFeatures: width, bias: true, factory: factory)
        self.activation = activation
        super.init()
    }

    /// `[…, E] → […, E]`.
    func callAsFunction(_ x: Tensor) -> Tensor { fc2(activation(fc1(x))) }   // (…, F) → (…, E)
}
