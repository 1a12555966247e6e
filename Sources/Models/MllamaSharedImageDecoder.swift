import Layers
import TensorCore

// Shapes: U distinct prompts (each with its images), K samples per prompt, B = U·K rows,
// T prompt tokens, N images, X tiles, S image tokens, D text width.

/// Mllama sampling K continuations of each of U prompts in one batch of U·K rows, for
/// ``generate(with:prompts:maxNewTokens:sampling:stopTokens:padToken:onStep:)``: each prompt's
/// images go through the image encoder and the projector **once**, and their projected tokens are
/// shared by the prompt's K rows (rows `u·K ..< (u+1)·K` are prompt u). Every cross-attention
/// layer then projects its keys and values for all U·K rows once, at the prompt step, and keeps
/// them in the cache for every generated token.
///
/// The prompt step (prefill) runs once per prompt too: the U distinct rows go through the model and
/// their self-attention keys and values, image keys and values and logits are copied to the K rows
/// of each (rows are independent, so this is what each row would have computed). Should a group's
/// rows differ after all, every row is prefilled.
///
/// The prompts must be passed to `generate` repeated the same way (row `u·K + k` is prompt u), and
/// `crossAttentionMask` `[U·K, T, N, X]` left-padded as `generate` lays them out.
public final class MllamaSharedImageDecoder: IncrementalDecoder {
    public let model: MllamaForConditionalGeneration
    /// `[U, S, D]`: each prompt's projected image tokens.
    let promptImageStates: Tensor
    /// `[U·K, S, D]`: each prompt's projected image tokens, repeated K times.
    let imageStates: Tensor
    public let samplesPerPrompt: Int
    public let crossAttentionMask: Tensor

    /// Encodes the U prompts' images once.
    /// - Parameters:
    ///   - pixelValues: `[U, N, X, C, H, W]`.
    ///   - samplesPerPrompt: K.
    public init(model: MllamaForConditionalGeneration, pixelValues: Tensor, aspectRatioIds: Tensor, aspectRatioMask: Tensor?,
                crossAttentionMask: Tensor, samplesPerPrompt: Int) {
        ensure(samplesPerPrompt >= 1, "samples per prompt must be at least 1, got \(samplesPerPrompt)")
        let u = pixelValues.shape[0]
        ensure(crossAttentionMask.shape[0] == u * samplesPerPrompt,
               "cross_attention_mask has \(crossAttentionMask.shape[0]) rows; expected \(u) prompts × \(samplesPerPrompt) samples")
        self.model = model
        self.crossAttentionMask = crossAttentionMask
        self.samplesPerPrompt = samplesPerPrompt
        promptImageStates = withNoGrad {
            model.imageStates(pixelValues: pixelValues, aspectRatioIds: aspectRatioIds, aspectRatioMask: aspectRatioMask)  // (U, S, D)
        }
        imageStates = Self.repeatRows(promptImageStates, times: samplesPerPrompt)              // (U·K, S, D)
    }

    public func makeCache(batch: Int, capacity: Int) -> MllamaCache { model.makeCache(batch: batch, capacity: capacity) }

    public func decode(_ ids: Tensor, attentionMask: Tensor, cache: MllamaCache) -> Tensor {
        let hidden: Tensor
        if cache.length == 0 {
            let (b, t) = (ids.shape[0], ids.shape[1])
            ensure(b == imageStates.shape[0] && crossAttentionMask.shape[1] == t,
                   "the prompt batch [\(b), \(t)] does not match the decoder's \(imageStates.shape[0]) rows and mask \(crossAttentionMask.shape)")
            let rows = crossAttentionMask.contiguous()                                         // (B, T, N, X)
            if samplesPerPrompt > 1 && groupsRepeatOneRow([ids, attentionMask, rows]) {
                return prefillOncePerPrompt(ids, attentionMask: attentionMask, crossAttentionRows: rows, cache: cache)
            }
            cache.imageKeysValues = [:]
            cache.lastCrossAttentionRow = rows.slice(axis: 1, (t - 1)..<t).contiguous()
            hidden = prefill(ids, attentionMask: attentionMask, crossAttentionRows: rows, imageStates: imageStates, cache: cache)
        } else {
            hidden = model.hiddenStates(inputIds: ids, attentionMask: attentionMask, cache: cache)
        }
        return model.languageModel.logits(hiddenStates: hidden.slice(axis: 1, (hidden.shape[1] - 1)..<hidden.shape[1]))  // (B, 1, V)
    }

    /// The prompt step for `[B, T]` ids into an empty cache → hidden states `[B, T, D]`.
    private func prefill(_ ids: Tensor, attentionMask: Tensor, crossAttentionRows rows: Tensor, imageStates: Tensor,
                         cache: MllamaCache) -> Tensor {
        let (b, t) = (ids.shape[0], ids.shape[1])
        let embeddings = model.languageModel.model.tokenEmbedding(ids)                          // (B, T, D)
        let (positions, mask) = LlamaForCausalLM.positionsAndMask(batch: b, newTokens: t, attentionMask: attentionMask,
                                                                  cachedLength: 0)
        let prepared = PreparedCrossAttentionMask(tiles: rows, tokensPerTile: model.visionModel.tokensPerTile,
                                                  masking: model.crossAttentionMasking, dtype: embeddings.dtype)
        return model.languageModel.model(embeddings: embeddings, positions: positions, mask: mask,
                                         crossAttention: CrossAttentionInputs(imageStates: imageStates, mask: prepared),
                                         cache: cache)                                            // (B, T, D)
    }

    /// Prefills the first row of each prompt's K into a U-row cache, then gives every row its
    /// prompt's cached keys and values and logits.
    private func prefillOncePerPrompt(_ ids: Tensor, attentionMask: Tensor, crossAttentionRows rows: Tensor,
                                      cache: MllamaCache) -> Tensor {
        let (b, t) = (ids.shape[0], ids.shape[1])
        let first = { (tensor: Tensor) in self.firstRowOfEachGroup(tensor) }
        let promptCache = model.makeCache(batch: b / samplesPerPrompt, capacity: t)
        let hidden = prefill(first(ids), attentionMask: first(attentionMask), crossAttentionRows: first(rows),
                             imageStates: promptImageStates, cache: promptCache)                 // (U, T, D)
        for (layer, prompt) in zip(cache.selfAttention.layers, promptCache.selfAttention.layers) {
            _ = layer.append(keys: Self.repeatRows(prompt.keys.slice(axis: 2, 0..<t), times: samplesPerPrompt),
                             values: Self.repeatRows(prompt.values.slice(axis: 2, 0..<t), times: samplesPerPrompt))
        }
        cache.imageKeysValues = promptCache.imageKeysValues.mapValues {
            (Self.repeatRows($0.keys, times: samplesPerPrompt), Self.repeatRows($0.values, times: samplesPerPrompt))
        }
        cache.lastCrossAttentionRow = rows.slice(axis: 1, (t - 1)..<t).contiguous()
        let logits = model.languageModel.logits(hiddenStates: hidden.slice(axis: 1, (t - 1)..<t))   // (U, 1, V)
        return Self.repeatRows(logits, times: samplesPerPrompt)                                  // (B, 1, V)
    }

    /// Whether, in every tensor, the K rows of each prompt are equal.
    private func groupsRepeatOneRow(_ tensors: [Tensor]) -> Bool {
        tensors.allSatisfy { tensor in
            let values = tensor.floats()
            let width = values.count / tensor.shape[0]
            return (0..<tensor.shape[0]).allSatisfy { row in
                let first = row / samplesPerPrompt * samplesPerPrompt
                return values[(row * width)..<((row + 1) * width)].elementsEqual(values[(first * width)..<((first + 1) * width)])
            }
        }
    }

    /// `[U·K, ...]` → `[U, ...]`: row `u·K` of each group.
    private func firstRowOfEachGroup(_ tensor: Tensor) -> Tensor {
        let rest = Array(tensor.shape.dropFirst())
        let u = tensor.shape[0] / samplesPerPrompt
        return tensor.reshaped([u, samplesPerPrompt] + rest).slice(axis: 1, 0..<1).contiguous().reshaped([u] + rest)
    }

    /// `[U, ...]` → `[U·K, ...]`, each row repeated K times in place (a contiguous copy).
    static func repeatRows(_ tensor: Tensor, times k: Int) -> Tensor {
        withNoGrad {
            let rest = Array(tensor.shape.dropFirst())
            let u = tensor.shape[0]
            return tensor.reshaped([u, 1] + rest).expanded(to: [u, k] + rest).contiguous().reshaped([u * k] + rest)
        }
    }
}
