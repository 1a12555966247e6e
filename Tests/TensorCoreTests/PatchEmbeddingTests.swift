import Testing
import TensorCore
import _TestSupport

/// The strided convolution written out in Double:
/// `out[n, r·(W/P) + c, d] = b[d] + Σ_{ch, ky, kx} W[d, ch, ky, kx] · image[n, ch, r·P + ky, c·P + kx]`.
private func naivePatchEmbedding(_ images: [Double], _ imageShape: [Int], _ weight: [Double], _ weightShape: [Int],
                                 _ bias: [Double]?) -> [Double] {
    let (n, channels, height, width) = (imageShape[0], imageShape[1], imageShape[2], imageShape[3])
    let (d, p) = (weightShape[0], weightShape[2])
    let (rows, columns) = (height / p, width / p)
    var out = [Double]()
    for ni in 0..<n { for r in 0..<rows { for c in 0..<columns { for di in 0..<d {
        var sum = bias?[di] ?? 0
        for ch in 0..<channels { for ky in 0..<p { for kx in 0..<p {
            sum += weight[((di * channels + ch) * p + ky) * p + kx] * images[((ni * channels + ch) * height + r * p + ky) * width + c * p + kx]
        } } }
        out.append(sum)
    } } } }
    return out
}

@Suite("Patch embedding")
struct PatchEmbeddingTests {
    @Test("patch embedding equals the stride-P convolution, flattened row-major with channels last")
    func matchesConvolution() {
        // 9×12 pixels in 4×4 patches: a 2×3 grid, the last pixel row ignored as by Conv2d.
        let images = randomFloats([2, 3, 9, 12], seed: 1), weight = randomFloats([5, 3, 4, 4], seed: 2), bias = randomFloats([5], seed: 3)
        let out = patchEmbedding(images, weight: weight, bias: bias)
        #expect(out.shape == [2, 6, 5])
        let expected = naivePatchEmbedding(images.doubles(), images.shape, weight.doubles(), weight.shape, bias.doubles())
        #expect(errors(out.doubles(), expected).maxAbs < 1e-5)
        let noBias = patchEmbedding(images, weight: weight)
        #expect(errors(noBias.doubles(), naivePatchEmbedding(images.doubles(), images.shape, weight.doubles(), weight.shape, nil)).maxAbs < 1e-5)
    }

    @Test("strided images (channels-last storage permuted to [N, C, H, W]) and a bfloat16 weight")
    func stridedImagesAndHalfWeight() {
        let stored = randomFloats([2, 8, 8, 3], seed: 4)  // [N, H, W, C]
        let images = stored.permuted([0, 3, 1, 2])
        let weight = randomFloats([4, 3, 2, 2], seed: 5)
        let out = patchEmbedding(images, weight: weight)
        #expect(out.shape == [2, 16, 4])
        let expected = naivePatchEmbedding(images.contiguous().doubles(), images.shape, weight.doubles(), weight.shape, nil)
        #expect(errors(out.doubles(), expected).maxAbs < 1e-5)
        let half = weight.converted(to: .bfloat16)
        let viaHalf = patchEmbedding(images, weight: half)
        let upcast = patchEmbedding(images, weight: half.converted(to: .float32))
        #expect(errors(viaHalf.doubles(), upcast.doubles()).maxAbs < 1e-5)
    }

    @Test("gradients for images, weight and bias match finite differences, ignored border pixels included")
    func gradientsMatchFiniteDifferences() {
        let images = randomDoubles([2, 2, 5, 7], seed: 6), weight = randomDoubles([3, 2, 2, 2], seed: 7), bias = randomDoubles([3], seed: 8)
        #expect(gradientCheck([images, weight, bias]) { patchEmbedding($0[0], weight: $0[1], bias: $0[2]) } == nil)
        // Border pixels (row 4, column 6) receive exactly zero gradient.
        let grad = images.grad!.doubles()
        for n in 0..<2 { for c in 0..<2 {
            let base = (n * 2 + c) * 35
            #expect((0..<7).allSatisfy { grad[base + 4 * 7 + $0] == 0 })
            #expect((0..<5).allSatisfy { grad[base + $0 * 7 + 6] == 0 })
        } }
    }

    @Test("the float32 backward equals the float64 backward")
    func float32Backward() {
        let images = randomFloats([2, 3, 8, 8], seed: 9, requiresGrad: true), weight = randomFloats([6, 3, 4, 4], seed: 10, requiresGrad: true)
        let bias = randomFloats([6], seed: 11, requiresGrad: true), upstream = randomFloats([2, 4, 6], seed: 12)
        (patchEmbedding(images, weight: weight, bias: bias) * upstream).sum().backward()
        let images64 = images.detached().converted(to: .float64), weight64 = weight.detached().converted(to: .float64)
        let bias64 = bias.detached().converted(to: .float64)
        for t in [images64, weight64, bias64] { t.requiresGrad = true }
        (patchEmbedding(images64, weight: weight64, bias: bias64) * upstream.converted(to: .float64)).sum().backward()
        #expect(errors(images.grad!.doubles(), images64.grad!.doubles()).maxAbs < 1e-5)
        #expect(errors(weight.grad!.doubles(), weight64.grad!.doubles()).maxAbs < 1e-5)
        #expect(errors(bias.grad!.doubles(), bias64.grad!.doubles()).maxAbs < 1e-5)
    }
}
