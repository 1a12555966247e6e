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
            // Each sampled row takes one uniform draw, in row order; drawn first, the rows' choices
            // are independent and run in parallel with the same results.
            let draws = (0..<batch).map { row in finished[row] || sampling.isGreedy ? 0 : generator.nextUniform() }
            var chosen = [Int](repeating: padToken, count: batch)
            chosen.withUnsafeMutableBufferPointer { chosen in
                Parallel.forEachRange(batch, grain: 1) { rows in
                    for row in rows where !finished[row] {
                        let rowLogits = Array(values[(row * vocabulary)..<((row + 1) * vocabulary)])
                        chosen[row] = chooseToken(rowLogits, sampling, uniform: draws[row])
                    }
                }
            }
            var next: [Int] = []
            var reported: [Int?] = []
            for row in 0..<batch {
                let token = chosen[row]
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

/// Picks the next token from one row of logits (one uniform draw from `generator` when sampling).
func chooseToken(_ logits: [Float], _ options: SamplingOptions, _ generator: inout RandomGenerator) -> Int {
    chooseToken(logits, options, uniform: options.isGreedy ? 0 : generator.nextUniform())
}

/// Picks the next token from one row of logits; `uniform` in [0, 1) is the draw when sampling.
func chooseToken(_ logits: [Float], _ options: SamplingOptions, uniform: Double) -> Int {
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
    var draw = uniform
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
/// Keeps the same tokens as that walk over a full sort without sorting: only tokens above
/// `(1 - topP) / (2V)` can be in the set (all the others together hold less than 1 − `topP`), and
/// among those a selection (``nucleusBoundary(_:topP:)``) finds the last kept value. When a
/// partial sum lies too close to `topP` for the selection to be sure the sorted walk breaks at the
/// same place, the candidates are sorted and walked as before.
func keepNucleus(_ probabilities: inout [Double], topP: Double) {
    let floor = (1 - topP) / Double(2 * probabilities.count)
    var candidates = probabilities.filter { $0 >= floor }
    let (threshold, tiesKept): (Double, Int)
    if let boundary = nucleusBoundary(&candidates, topP: topP) {
        (threshold, tiesKept) = boundary
    } else if let boundary = nucleusBoundaryBySorting(candidates, topP: topP) {
        (threshold, tiesKept) = boundary
    } else if candidates.count < probabilities.count, let boundary = nucleusBoundaryBySorting(probabilities, topP: topP) {
        (threshold, tiesKept) = boundary
    } else {
        return   // the cumulative sum never reaches topP: the walk keeps every token
    }
    // Kept: every value above the last kept one, and of those equal to it the first few by id.
    var ties = tiesKept
    for index in probabilities.indices where probabilities[index] <= threshold {
        if probabilities[index] == threshold && ties > 0 { ties -= 1 } else { probabilities[index] = 0 }
    }
}

/// The walk itself: sorts `values` descending, sums them in that order until the sum reaches
/// `topP`, and returns the last value summed and how many values equal to it were summed; nil
/// when the sum of all stays below `topP`.
private func nucleusBoundaryBySorting(_ values: [Double], topP: Double) -> (threshold: Double, tiesKept: Int)? {
    let sorted = values.sorted(by: >)
    var cumulative = 0.0
    for (position, value) in sorted.enumerated() {
        cumulative += value
        if cumulative >= topP {
            var ties = 0
            var earlier = position
            while earlier >= 0 && sorted[earlier] == value { ties += 1; earlier -= 1 }
            return (value, ties)
        }
    }
    return nil
}

/// The walk's boundary found by three-way partitioning around pivots (a quickselect on the
/// cumulative sum; `values` is reordered): `threshold` is the last value summed, `tiesKept` how
/// many values equal to it are summed. The walk sums in descending order with rounding, so its
/// partial sums differ from these (summed in another order) by at most ~n·ε; the answer is given
/// only when the partial sums just before and at the boundary are farther than that from `topP`,
/// so the walk breaks at the same element. Otherwise nil.
func nucleusBoundary(_ values: inout [Double], topP: Double) -> (threshold: Double, tiesKept: Int)? {
    let margin = 8 * Double(values.count) * Double.ulpOfOne
    return values.withUnsafeMutableBufferPointer { buffer -> (threshold: Double, tiesKept: Int)? in
        var above = 0.0   // the sum of every value above the unresolved range
        var (low, high) = (0, buffer.count)
        var rounds = 0
        while low < high && rounds < 64 {
            rounds += 1
            let pivot = buffer[low + (high - low) / 2]
            // [low, greater) > pivot, [greater, less) == pivot, [less, high) < pivot.
            var (greater, index, less) = (low, low, high)
            while index < less {
                let value = buffer[index]
                if value > pivot { buffer.swapAt(greater, index); greater += 1; index += 1 }
                else if value < pivot { less -= 1; buffer.swapAt(index, less) }
                else { index += 1 }
            }
            var sumGreater = 0.0
            for i in low..<greater { sumGreater += buffer[i] }
            if above + sumGreater >= topP {
                high = greater
                continue
            }
            let equal = less - greater
            if pivot > 0 && above + sumGreater + Double(equal) * pivot >= topP {
                let needed = min(equal, max(1, Int(((topP - above - sumGreater) / pivot).rounded(.up))))
                let before = above + sumGreater + Double(needed - 1) * pivot
                guard before < topP - margin && before + pivot >= topP + margin else { return nil }
                return (pivot, needed)
            }
            above += sumGreater + Double(equal) * pivot
            low = less
        }
        return nil
    }
}
