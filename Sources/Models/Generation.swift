import Layers
import TensorCore

/// How the next token is chosen from the logits, in the order transformers applies them:
/// temperature, then top-k, then top-p (nucleus), then a draw. `temperature == 0` is greedy.
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Double
    public var topK: Int
    public var topP: Double
    public var seed: UInt64

    public init(temperature: Double = 0, topK: Int = 0, topP: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    /// Always the most likely token (ties go to the lowest id, as `torch.argmax`).
    public static let greedy = SamplingOptions()

    public var isGreedy: Bool { temperature == 0 }
}

/// A decoder that can extend a cache one step at a time.
///
/// `Cache` is whatever the model keeps between steps: a ``KVCache`` for Llama; for Mllama also
/// the image's cross-attention keys and values (``MllamaCache``).
public protocol IncrementalDecoder: AnyObject {
    associatedtype Cache
    /// A cache for `batch` rows of up to `capacity` positions.
    func makeCache(batch: Int, capacity: Int) -> Cache
    /// Logits `[B, T, V]` for `ids` `[B, T]` after the cached positions; `attentionMask` covers cached + new.
    /// The first call (an empty cache) is the prompt.
    func decode(_ ids: Tensor, attentionMask: Tensor, cache: Cache) -> Tensor
}

extension LlamaForCausalLM: IncrementalDecoder {
    public func makeCache(batch: Int, capacity: Int) -> KVCache {
        KVCache(layerCount: config.numHiddenLayers, batch: batch, kvHeads: config.numKeyValueHeads,
                capacity: capacity, headDimension: config.headDim)
    }

    public func decode(_ ids: Tensor, attentionMask: Tensor, cache: KVCache) -> Tensor {
        let hidden = hiddenStates(ids, attentionMask: attentionMask, cache: cache)   // (B, T, D)
        // Only the last position's logits are needed to pick the next token.
        let last = hidden.slice(axis: 1, (hidden.shape[1] - 1)..<hidden.shape[1])       // (B, 1, D)
        return logits(hiddenStates: last)                                             // (B, 1, V)
    }
}

/// Continues each prompt until it emits a stop token or reaches `maxNewTokens`.
///
/// Prompts of different lengths are left-padded into one batch; positions and masks make every row
/// compute exactly what it would alone. The prompt is processed in one forward pass (prefill), then
/// one token per step against the KV cache.
///
/// - Parameters:
///   - onStep: called after every step with each row's new token (`nil` once a row has finished);
///     return `false` to stop early. For streaming output.
/// - Returns: each row's new tokens, including the stop token that ended it.
public func generate(with model: some IncrementalDecoder, prompts: [[Int]], maxNewTokens: Int,
                     sampling: SamplingOptions = .greedy, stopTokens: Set<Int> = [], padToken: Int = 0,
                     onStep: (([Int?]) -> Bool)? = nil) -> [[Int]] {
    ensure(!prompts.isEmpty && prompts.allSatisfy { !$0.isEmpty }, "generate needs at least one non-empty prompt")
    let batch = prompts.count
    let promptLength = prompts.map(\.count).max()!
    let cache = model.makeCache(batch: batch, capacity: promptLength + maxNewTokens)
    var generator = RandomGenerator(seed: sampling.seed)

    var ids: [Int] = [], mask: [Int] = []
    for prompt in prompts {
        let padding = promptLength - prompt.count
        ids += Array(repeating: padToken, count: padding) + prompt
        mask += Array(repeating: 0, count: padding) + Array(repeating: 1, count: prompt.count)
    }
    var maskRows = (0..<batch).map { Array(mask[($0 * promptLength)..<(($0 + 1) * promptLength)]) }
    var outputs = Array(repeating: [Int](), count: batch)
    var finished = Array(repeating: false, count: batch)
    var stepInput = Tensor(indices: ids, shape: [batch, promptLength])

    return withNoGrad {
        for _ in 0..<maxNewTokens {
            let maskTensor = Tensor(indices: maskRows.flatMap { $0 }, shape: [batch, maskRows[0].count])
            let logits = model.decode(stepInput, attentionMask: maskTensor, cache: cache)   // (B, 1, V)
            let vocabulary = logits.shape[2]
            let values = logits.floats()
            var next: [Int] = []
            var reported: [Int?] = []
            for row in 0..<batch {
                let rowLogits = Array(values[(row * vocabulary)..<((row + 1) * vocabulary)])
                let token = finished[row] ? padToken : chooseToken(rowLogits, sampling, &generator)
                next.append(token)
                reported.append(finished[row] ? nil : token)
                if !finished[row] {
                    outputs[row].append(token)
                    if stopTokens.contains(token) { finished[row] = true }
                }
                maskRows[row].append(1)
            }
            if let onStep, !onStep(reported) { break }
            if finished.allSatisfy({ $0 }) { break }
            stepInput = Tensor(indices: next, shape: [batch, 1])
        }
        return outputs
    }
}

/// Picks the next token from one row of logits.
func chooseToken(_ logits: [Float], _ options: SamplingOptions, _ generator: inout RandomGenerator) -> Int {
    if options.isGreedy {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        return best
    }
    var scaled = logits.map { Double($0) / options.temperature }
    if options.topK > 0 && options.topK < scaled.count {
        let threshold = scaled.sorted(by: >)[options.topK - 1]
        for i in scaled.indices where scaled[i] < threshold { scaled[i] = -.infinity }
    }
    let maximum = scaled.max()!
    var probabilities = scaled.map { Double.exp($0 - maximum) }
    let total = probabilities.reduce(0, +)
    probabilities = probabilities.map { $0 / total }
    if options.topP < 1 {
        keepNucleus(&probabilities, topP: options.topP)
        let kept = probabilities.reduce(0, +)
        probabilities = probabilities.map { $0 / kept }
    }
    var draw = generator.nextUniform()
    for (index, p) in probabilities.enumerated() {
        draw -= p
        if draw < 0 { return index }
    }
    return probabilities.lastIndex { $0 > 0 } ?? 0
}

/// Top-p: zeroes every probability outside the smallest set of most likely tokens whose
/// cumulative probability, summed from the most likely down, reaches `topP`; ties go to the lowest
/// id (the order of a stable sort by descending probability).
///
/// Only the probability *values* are sorted (no index indirection), and only those that can be in
/// the set: a token below `(1 - topP) / (2V)` cannot be, since all of them together hold less than
/// 1 − `topP`. The cumulative sums run over the same values in the same order as a full sort, so
/// the same tokens are kept; should rounding leave the candidates short of `topP`, every value is
/// sorted instead.
func keepNucleus(_ probabilities: inout [Double], topP: Double) {
    let floor = (1 - topP) / Double(2 * probabilities.count)
    var candidates = probabilities.filter { $0 >= floor }
    candidates.sort(by: >)
    var last = -1
    var cumulative = 0.0
    for (position, value) in candidates.enumerated() {
        cumulative += value
        if cumulative >= topP { last = position; break }
    }
    if last < 0 {
        guard candidates.count < probabilities.count else {
            return   // the sum of all never reaches topP: every token stays, as the full walk keeps them all
        }
        candidates = probabilities.sorted(by: >)
        cumulative = 0
        last = candidates.count - 1
        for (position, value) in candidates.enumerated() {
            cumulative += value
            if cumulative >= topP { last = position; break }
        }
    }
    // Kept: every value above the last kept one, and of those equal to it the first few by id.
    let threshold = candidates[last]
    var tiesKept = 0
    var position = last
    while position >= 0 && candidates[position] == threshold { tiesKept += 1; position -= 1 }
    for index in probabilities.indices where probabilities[index] <= threshold {
        if probabilities[index] == threshold && tiesKept > 0 { tiesKept -= 1 } else { probabilities[index] = 0 }
    }
}
