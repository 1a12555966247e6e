import Foundation
import Media
import Models
import Processing
import TensorCore
import Tokenization
#if canImport(Glibc)
import Glibc
#endif

/// How far a model's text-only predictions moved from the base Llama's on held-out text.
public struct TextDrift: Codable, Sendable, Equatable {
    /// exp(mean next-token loss) of the base Llama on the learned tokens.
    public var basePerplexity: Double
    /// The same for the model, with no image.
    public var perplexity: Double
    /// Mean KL(base ‖ model) over every real position, in nats: 0 when the text path is untouched.
    public var klDivergence: Double
    /// Positions the KL averages over.
    public var positions: Int

    enum CodingKeys: String, CodingKey {
        case basePerplexity = "base_perplexity", perplexity, klDivergence = "kl_divergence", positions
    }
}

/// Prefill and decoding speed with a number of images in the prompt.
public struct GenerationTiming: Codable, Sendable, Equatable {
    public var images: Int
    /// Prompt length in text positions (the token-stream model's grows with every image).
    public var promptTokens: Int
    /// Seconds from the call to the first new token: image encoding and the prompt's forward pass.
    public var prefillSeconds: Double
    /// New tokens per second after the first.
    public var decodeTokensPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case images, promptTokens = "prompt_tokens", prefillSeconds = "prefill_s", decodeTokensPerSecond = "decode_tokens_per_s"
    }
}

/// A held-out image to describe, with the prompt that asks for the description and the scorer of
/// the description (the world's ``CaptionScore``: accuracy of the stated attributes, recall of the
/// scene's objects).
public struct CaptionSample: Sendable {
    public var id: String
    public var image: Image
    public var prompt: String
    public var score: @Sendable (String) -> (accuracy: Double, recall: Double)

    public init(id: String, image: Image, prompt: String, score: @escaping @Sendable (String) -> (accuracy: Double, recall: Double)) {
        self.id = id
        self.image = image
        self.prompt = prompt
        self.score = score
    }
}

enum ComparisonMeasurements {
    /// Longest description generated for caption accuracy, in tokens.
    static let captionTokens = 64

    /// Mean accuracy and recall of the model's greedy descriptions of `samples`: in the `.chat`
    /// layout one chat turn (the image, then the sample's prompt); in the `.caption` layout the
    /// image alone, continued as the pretraining stages' captions are (the prompt is not used).
    /// With `blankImages` every picture is black: what the model says without seeing it.
    static func captionScores(model: any TrainableLanguageModel, processor: MllamaProcessor, samples: [CaptionSample],
                              layout: QuestionAnswering.PromptLayout = .chat,
                              blankImages: Bool = false) throws -> (accuracy: Double, recall: Double) {
        guard !samples.isEmpty else { throw TrainingError("caption accuracy: no held-out scenes to describe") }
        var qa = try QuestionAnswering(model: model, processor: processor, maxNewTokens: captionTokens)
        qa.promptLayout = layout
        let questions = samples.map {
            QuestionAnswering.Question(id: $0.id, prompt: layout == .chat ? $0.prompt : "", answer: "", type: "caption", images: [$0.image])
        }
        let scores = zip(try qa.answers(to: questions, blankImages: blankImages), samples).map { $1.score($0) }
        let count = Double(scores.count)
        return (scores.map(\.accuracy).reduce(0, +) / count, scores.map(\.recall).reduce(0, +) / count)
    }

    /// Text drift over the records of `datasets` read without their images (up to `maxSamples`; 0: all).
    static func textDrift(model: any TrainableLanguageModel, base: LlamaForCausalLM, processor: MllamaProcessor,
                          datasets: [Dataset], maxSamples: Int) throws -> TextDrift {
        let encoder = try SampleEncoder(processor: processor, maxLength: 4096, maxImages: 64, ignoresImages: true)
        let options = DataLoaderOptions(microBatchSize: 8, seed: 0, shuffle: false, epochs: 1, prefetchBatches: 0, maxSkipShare: 1)
        let loader = try DataLoader(sources: datasets.map { DataSource($0) }, encoder: encoder, options: options)
        var baseLoss = 0.0, modelLoss = 0.0, learned = 0, kl = 0.0, positions = 0, samples = 0
        while let batch = try loader.next(), maxSamples == 0 || samples < maxSamples {
            samples += batch.sampleIDs.count
            let (b, t) = (batch.inputs.batchSize, batch.inputs.length)
            let (p, q) = withNoGrad {
                (base.logits(batch.inputs).logSoftmax(axis: -1).doubles(), model.logits(batch.inputs.withoutImages).logSoftmax(axis: -1).doubles())
            }
            let v = p.count / (b * t)
            let attention = batch.inputs.attentionMask?.integers() ?? Array(repeating: 1, count: b * t)
            let labels = batch.labels.integers()
            for row in 0..<b {
                for position in 0..<t where attention[row * t + position] == 1 {
                    let offset = (row * t + position) * v
                    var sum = 0.0
                    for k in 0..<v { sum += exp(p[offset + k]) * (p[offset + k] - q[offset + k]) }
                    kl += sum
                    positions += 1
                    if position + 1 < t, labels[row * t + position + 1] != SampleEncoder.ignoreIndex {
                        let target = labels[row * t + position + 1]
                        baseLoss -= p[offset + target]
                        modelLoss -= q[offset + target]
                        learned += 1
                    }
                }
            }
        }
        guard positions > 0 else { throw TrainingError("text drift: the held-out data gave no text to measure") }
        return TextDrift(basePerplexity: exp(baseLoss / Double(max(learned, 1))), perplexity: exp(modelLoss / Double(max(learned, 1))),
                         klDivergence: kl / Double(positions), positions: positions)
    }

    /// Greedy generation of `newTokens` tokens (no stop token) for one question asked about
    /// `count` copies of `image`, for each count: the best of `rounds` timed runs after one warm-up
    /// (on a shared machine the least disturbed run is the one that measures the model).
    static func generationTimings(model: any TrainableLanguageModel, processor: MllamaProcessor, image: Image, question: String,
                                  imageCounts: [Int], newTokens: Int = 16, rounds: Int = 5) throws -> [GenerationTiming] {
        let qa = try QuestionAnswering(model: model, processor: processor)
        return try imageCounts.map { count in
            let parts = Array(repeating: ChatMessage.Part.image, count: count) + [.text(question)]
            var prompt = try qa.chatFormat.encode([ChatMessage(role: .user, parts: parts)], addGenerationPrompt: true).ids
            let batch = try processor.imageProcessor.preprocess([Array(repeating: image, count: count)])
            let run: () -> [Double]
            func timed(_ body: (@escaping ([Int?]) -> Bool) -> Void) -> [Double] {
                let start = Date()
                let stamps = Stamps()
                body { _ in stamps.values.append(Date().timeIntervalSince(start)); return true }
                return stamps.values
            }
            switch model {
            case let mllama as MllamaForConditionalGeneration:
                let decoder = qa.mllamaDecoder(mllama, prompts: [prompt], images: batch, imagesPerPrompt: count)
                run = { [prompt] in timed { _ = generate(with: decoder, prompts: [prompt], maxNewTokens: newTokens, onStep: $0) } }
            case let stream as TokenStreamModel:
                prompt = expandImageTokens(prompt, imageTokenID: processor.imageTokenID, count: stream.imageTokensPerImage)
                let decoder = stream.conditioned(pixelValues: batch.pixelValues, aspectRatioIds: batch.aspectRatioIDs,
                                                 aspectRatioMask: batch.aspectRatioMask)
                run = { [prompt] in timed { _ = generate(with: decoder, prompts: [prompt], maxNewTokens: newTokens, onStep: $0) } }
            default:
                throw TrainingError("generation timing needs a vision model, not \(type(of: model))")
            }
            _ = run()
            let stamps = (0..<rounds).map { _ in run() }
            let prefill = stamps.map { $0.first ?? .infinity }.min()!
            let decode = stamps.map { s in s.count > 1 ? Double(s.count - 1) / max(s.last! - s.first!, 1e-9) : 0 }.max()!
            return GenerationTiming(images: count, promptTokens: prompt.count, prefillSeconds: prefill, decodeTokensPerSecond: decode)
        }
    }
}

/// Times collected by a generation callback.
private final class Stamps { var values: [Double] = [] }

/// The process's peak resident memory, resettable between jobs.
enum ProcessMemory {
    /// Frees cached tensor buffers and resets the kernel's high-water mark (`/proc/self/clear_refs`).
    static func resetPeak() {
        releaseCachedTensorBuffers()
        if let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") {
            try? handle.write(contentsOf: Data("5".utf8))
            try? handle.close()
        }
    }

    /// Peak resident set size since the last reset, in megabytes (`VmHWM`); 0 where unknown.
    static func peakResidentMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return (line.split(separator: " ").compactMap { Double($0) }.first ?? 0) / 1024
        }
        return 0
    }
}
