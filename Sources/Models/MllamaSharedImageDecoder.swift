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
/// The prompts must be passed to `generate` repeated the same way (row `u·K + k` is prompt u), and
/// `crossAttentionMask` `[U·K, T, N, X]` left-padded as `generate` lays them out.
public final class MllamaSharedImageDecoder: IncrementalDecoder {
    public let model: MllamaForConditionalGeneration
    /// `[U·K, S, D]`: each prompt's projected image tokens, repeated K times (views of one encoding).
    let imageStates: Tensor
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
        imageStates = withNoGrad {
            let encoded = model.imageStates(pixelValues: pixelValues, aspectRatioIds: aspectRatioIds,
                                            aspectRatioMask: aspectRatioMask)                  // (U, S, D)
            let (s, d) = (encoded.shape[1], encoded.shape[2])
            return encoded.reshaped([u, 1, s, d]).expanded(to: [u, samplesPerPrompt, s, d])
                .contiguous().reshaped([u * samplesPerPrompt, s, d])                            // (U·K, S, D)
        }
    }

    public func makeCache(batch: Int, capacity: Int) -> MllamaCache { model.makeCache(batch: batch, capacity: capacity) }

    public func decode(_ ids: Tensor, attentionMask: Tensor, cache: MllamaCache) -> Tensor {
        let hidden: Tensor
        if cache.length == 0 {
            let (b, t) = (ids.shape[0], ids.shape[1])
            ensure(b == imageStates.shape[0] && crossAttentionMask.shape[1] == t,
                   "the prompt batch [\(b), \(t)] does not match the decoder's \(imageStates.shape[0]) rows and mask \(crossAttentionMask.shape)")
            let embeddings = model.languageModel.model.tokenEmbedding(ids)                      // (B, T, D)
            let (positions, mask) = LlamaForCausalLM.positionsAndMask(batch: b, newTokens: t, attentionMask: attentionMask,
                                                                      cachedLength: 0)
            let rows = crossAttentionMask.contiguous()                                         // (B, T, N, X)
            cache.imageKeysValues = [:]
            cache.lastCrossAttentionRow = rows.slice(axis: 1, (t - 1)..<t).contiguous()
            let prepared = PreparedCrossAttentionMask(tiles: rows, tokensPerTile: model.visionModel.tokensPerTile,
                                                      masking: model.crossAttentionMasking, dtype: embeddings.dtype)
            hidden = model.languageModel.model(embeddings: embeddings, positions: positions, mask: mask,
                                               crossAttention: CrossAttentionInputs(imageStates: imageStates, mask: prepared),
                                               cache: cache)                                    // (B, T, D)
        } else {
            hidden = model.hiddenStates(inputIds: ids, attentionMask: attentionMask, cache: cache)
        }
        return model.languageModel.logits(hiddenStates: hidden.slice(axis: 1, (hidden.shape[1] - 1)..<hidden.shape[1]))  // (B, 1, V)
    }
}
