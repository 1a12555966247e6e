/// Patch embedding: a convolution whose stride equals its kernel, computed as one GEMM.
///
/// Shapes: N images, C channels, Hpx × Wpx pixels, P × P patches, L = (Hpx/P)·(Wpx/P) patches per
/// image, D embedding width.

/// Cuts images into non-overlapping patches and embeds each with a linear map — the patch
/// convolution of CLIP and Mllama's vision tower (`nn.Conv2d(C, D, kernel_size=P, stride=P)`)
/// followed by flattening the grid and moving channels last.
///
/// - Parameters:
///   - images: `[N, C, Hpx, Wpx]`, float32 or float64, any strides. Pixels beyond the last whole
///     patch (when Hpx or Wpx is not a multiple of P) are ignored, as by the convolution.
///   - weight: `[D, C, P, P]` (PyTorch's Conv2d layout); float32, float64, or a frozen 16-bit float.
///   - bias: `[D]`, optional.
/// - Returns: `[N, L, D]`, patches in row-major grid order (patch `(r, c)` at index `r·(Wpx/P) + c`).
///
/// Computed as `unfold(images) · W.reshaped([D, C·P·P])ᵀ + b`, where unfold lays each patch out as
/// a `[C·P·P]` row in the weight's `(c, ky, kx)` order. Saves for backward what ``Tensor/linear(weight:bias:)``
/// saves (the unfolded patches and the weight). Backward: `dW`, `db` from the linear map, and
/// `d(images)` by folding the patch-row gradients back into place (patches do not overlap, so
/// folding is a scatter; ignored border pixels get 0).
public func patchEmbedding(_ images: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    ensure(images.rank == 4, "patchEmbedding: images must be [N, C, Hpx, Wpx], got \(images.shape)")
    ensure(weight.rank == 4, "patchEmbedding: weight must be [D, C, P, P], got \(weight.shape)")
    let (n, channels) = (images.shape[0], images.shape[1])
    let (width, patchHeight, patchWidth) = (weight.shape[0], weight.shape[2], weight.shape[3])
    ensure(weight.shape[1] == channels,
                 "patchEmbedding: weight \(weight.shape) expects \(weight.shape[1]) channels, images \(images.shape) have \(channels)")
    ensure(patchHeight > 0 && patchWidth > 0, "patchEmbedding: empty patch size in weight \(weight.shape)")
    let grid = (rows: images.shape[2] / patchHeight, columns: images.shape[3] / patchWidth)
    let patches = unfoldPatches(images, patchHeight: patchHeight, patchWidth: patchWidth)  // (N·L, C·P·P)
    let flatWeight = weight.reshaped([width, channels * patchHeight * patchWidth])  // (D, C·P·P)
    return patches.linear(weight: flatWeight, bias: bias).reshaped([n, grid.rows * grid.columns, width])  // (N, L, D)
}

/// `[N, C, Hpx, Wpx] → [N·L, C·Ph·Pw]`: row `(n, r, c)` holds patch `(r, c)` of image `n`,
/// channel-major then row-major within the patch. Saves nothing; backward folds the gradient back.
private func unfoldPatches(_ images: Tensor, patchHeight: Int, patchWidth: Int) -> Tensor {
    images.requireComputeType("patchEmbedding")
    let source = images.contiguousStorageView()
    let (n, channels) = (images.shape[0], images.shape[1])
    let geometry = PatchGeometry(channels: channels, height: images.shape[2], width: images.shape[3],
                                 patchHeight: patchHeight, patchWidth: patchWidth, byteSize: images.dtype.byteSize)
    let out = Tensor(zeros: [n * geometry.patchCount, geometry.patchLength], dtype: images.dtype)
    geometry.copy(images: source.rawPointer, patches: out.rawPointer, imageCount: n, unfolding: true)
    if Autograd.needsGraph(images) {
        let imageShape = images.shape, dtype = images.dtype
        out.recordOperation("unfoldPatches", inputs: [images]) { g in
            let gradient = g.contiguousStorageView()
            let dImages = Tensor(zeros: imageShape, dtype: dtype)
            geometry.copy(images: dImages.rawPointer, patches: gradient.rawPointer, imageCount: n, unfolding: false)
            return [dImages]
        }
    }
    return out
}

/// Where each patch row of one image lives, for moving bytes either way between a contiguous
/// image batch and its patch matrix.
private struct PatchGeometry {
    let channels, height, width, patchHeight, patchWidth, byteSize: Int
    var gridColumns: Int { width / patchWidth }
    var patchCount: Int { (height / patchHeight) * gridColumns }
    var patchLength: Int { channels * patchHeight * patchWidth }

    /// Copies patches out of the images (`unfolding`) or back into them (folding).
    func copy(images: UnsafeMutableRawPointer, patches: UnsafeMutableRawPointer, imageCount: Int, unfolding: Bool) {
        let rowBytes = patchWidth * byteSize
        Parallel.forEachRange(imageCount * patchCount, grain: max(1, 8192 / max(patchLength, 1))) { rows in
            for row in rows {
                let (image, patch) = row.quotientAndRemainder(dividingBy: patchCount)
                let (gridRow, gridColumn) = patch.quotientAndRemainder(dividingBy: gridColumns)
                let patchBase = patches + row * patchLength * byteSize
                for c in 0..<channels {
                    for ky in 0..<patchHeight {
                        let y = gridRow * patchHeight + ky
                        let pixel = ((image * channels + c) * height + y) * width + gridColumn * patchWidth
                        let imageRow = images + pixel * byteSize
                        let patchRow = patchBase + (c * patchHeight + ky) * rowBytes
                        if unfolding {
                            patchRow.copyMemory(from: imageRow, byteCount: rowBytes)
                        } else {
                            imageRow.copyMemory(from: patchRow, byteCount: rowBytes)
                        }
                    }
                }
            }
        }
    }
}
