import Layers
import Models
import Testing
import TensorCore
import _TestSupport

/// A preference batch shows each pair's image to its chosen and rejected rows: with
/// `imageRowGroups` the image is encoded once and serves every group of rows.
@Suite("Mllama: rows in groups share one encoding of their images")
struct SharedImageRowsTests {
    /// Two groups of two rows (chosen, rejected) over two images, float64.
    private func setUp() -> (model: MllamaForConditionalGeneration, tokens: Tensor, crossMask: Tensor,
                             images: (pixels: Tensor, ids: Tensor, tiles: Tensor)) {
        let model = MllamaForConditionalGeneration(config: tinyMllamaConfig(), factory: ParameterFactory(.random(seed: 12, standardDeviation: 0.3)))
        convertToFloat64(model)
        for (name, tensor) in model.parameters() where name.hasSuffix("gate") || name.hasSuffix("gate_attn") || name.hasSuffix("gate_ffn") {
            setGate(tensor, 0.6)
        }
        let tokens = Tensor(indices: [24, 3, 4, 5, 24, 6, 7, 8, 24, 3, 9, 10, 24, 6, 11, 12], shape: [4, 4])
        let crossMask = Tensor(indices: Array(repeating: [1, 0], count: 16).flatMap { $0 }, shape: [4, 4, 1, 2])
        return (model, tokens, crossMask, tinyImages(batch: 2, seed: 61, dtype: .float64))
    }

    @Test("the logits and every gradient equal those of the images given once per row")
    func sameAsDuplicatedImages() {
        let (model, tokens, crossMask, images) = setUp()
        let twice = { (t: Tensor) in Tensor.concatenate([t, t], axis: 0).contiguous() }
        func run(_ shared: Bool) -> (logits: [Double], gradients: [String: [Double]]) {
            for (_, tensor) in model.parameters() { tensor.grad = nil }
            let logits = shared
                ? model(inputIds: tokens, pixelValues: images.pixels, aspectRatioIds: images.ids, aspectRatioMask: images.tiles,
                        crossAttentionMask: crossMask, imageRowGroups: 2)
                : model(inputIds: tokens, pixelValues: twice(images.pixels), aspectRatioIds: twice(images.ids),
                        aspectRatioMask: twice(images.tiles), crossAttentionMask: crossMask)
            (logits * logits).sum().backward()
            return (logits.doubles(), Dictionary(uniqueKeysWithValues: model.parameters().compactMap { name, tensor in
                tensor.grad.map { (name, $0.doubles()) } }))
        }
        let (sharedLogits, sharedGradients) = run(true), (separateLogits, separateGradients) = run(false)
        #expect(maxAbsDifference(sharedLogits, separateLogits) < 1e-12)
        #expect(Set(sharedGradients.keys) == Set(separateGradients.keys) && sharedGradients.keys.contains { $0.hasPrefix("vision_model.") })
        for (name, gradient) in sharedGradients {
            #expect(maxAbsDifference(gradient, separateGradients[name]!) < 1e-9, "\(name)")
        }
    }

    @Test("gradients through the shared encoding match central differences (float64)")
    func sharedGradients() {
        let (model, tokens, crossMask, images) = setUp()
        let named = Dictionary(uniqueKeysWithValues: model.parameters())
        let checked = ["vision_model.class_embedding", "vision_model.transformer.layers.0.mlp.fc2.bias", "multi_modal_projector.bias",
                       "language_model.model.layers.1.cross_attn.k_norm.weight"].map { named[$0]! }
        for (_, tensor) in named { tensor.requiresGrad = false }
        for tensor in checked { tensor.requiresGrad = true }
        let failure = gradientCheck(checked, tolerance: 1e-6) { _ in
            model(inputIds: tokens, pixelValues: images.pixels, aspectRatioIds: images.ids, aspectRatioMask: images.tiles,
                  crossAttentionMask: crossMask, imageRowGroups: 2)
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    private func maxAbsDifference(_ a: [Double], _ b: [Double]) -> Double {
        precondition(a.count == b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }
}
