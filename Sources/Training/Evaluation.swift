import Collectives
import Foundation
import Media
import Models
import Processing
import TensorCore
import Tokenization

/// How a model's answer and a reference answer are compared: lower-cased, with leading and
/// trailing white space and final punctuation (`.`, `!`, `?`, `,`) removed, inner runs of white
/// space folded to one space, and a leading article (`a`, `an`, `the`) dropped. "The red circle."
/// matches "red circle".
public func normalizedAnswer(_ text: String) -> String {
    var words = text.lowercased().split(whereSeparator: \.isWhitespace).map(String.init)
    while let last = words.last, let final = last.last, ".!?,".contains(final) {
        words[words.count - 1] = String(last.dropLast())
        if words[words.count - 1].isEmpty { words.removeLast() }
    }
    if let first = words.first, ["a", "an", "the"].contains(first), words.count > 1 { words.removeFirst() }
    return words.joined(separator: " ")
}

/// Exact match of greedy answers to questions with reference answers, overall and by question type.
public struct ExactMatchResult: Sendable, Equatable {
    public var correct: Int
    public var total: Int
    public var byType: [String: (correct: Int, total: Int)]

    public var accuracy: Double { total == 0 ? 0 : Double(correct) / Double(total) }

    public static func == (a: Self, b: Self) -> Bool {
        a.correct == b.correct && a.total == b.total && a.byType.keys == b.byType.keys
            && a.byType.allSatisfy { key, value in b.byType[key]! == value }
    }
}

/// Greedy answers to held-out questions: each question is asked as a one-turn chat (the images,
/// then the question) with the assistant header open, and the answer up to `<|eot_id|>` is
/// compared with the reference after ``normalizedAnswer(_:)``.
///
/// With `blankImages`, every image is replaced by a black one of the same size: the gap between
/// the two results is how much the model uses the image. A text-only model (Llama) gets the
/// question without images: the no-vision baseline.
public struct QuestionAnswering {
    public let model: any TrainableLanguageModel
    public let processor: MllamaProcessor
    public let chatFormat: Llama3ChatFormat
    public var maxNewTokens: Int
    public var batchSize: Int
    /// A LLaVA model's image processor (its images are CLIP pixel values, not Mllama tiles).
    public var clipImageProcessor: CLIPImageProcessor?
    /// How a question becomes prompt tokens.
    public var promptLayout: PromptLayout = .chat

    /// The token layout of a prompt.
    public enum PromptLayout: Sendable {
        /// One user turn of the Llama 3 chat format (the images, then the question) and the
        /// assistant header: what SFT and the post-training stages train on.
        case chat
        /// The pretraining layout: `<|begin_of_text|>`, the images' `<|image|>` tokens, then the
        /// prompt as plain text (empty: the model goes on with a caption), as the pretraining
        /// stages train on image–text pairs.
        case caption
    }

    public init(model: any TrainableLanguageModel, processor: MllamaProcessor, maxNewTokens: Int = 16, batchSize: Int = 8,
                clipImageProcessor: CLIPImageProcessor? = nil) throws {
        self.model = model
        self.processor = processor
        self.clipImageProcessor = clipImageProcessor
        chatFormat = try Llama3ChatFormat(tokenizer: processor.tokenizer)
        self.maxNewTokens = maxNewTokens
        self.batchSize = batchSize
    }

    /// One question, its images and its reference answer.
    public struct Question: Sendable {
        public var id: String
        public var prompt: String
        public var answer: String
        public var type: String
        public var images: [Image]
        public init(id: String, prompt: String, answer: String, type: String, images: [Image]) {
            self.id = id
            self.prompt = prompt
            self.answer = answer
            self.type = type
            self.images = images
        }
    }

    /// The model's greedy answers, in order.
    public func answers(to questions: [Question], blankImages: Bool = false) throws -> [String] {
        var answers: [String] = []
        let stops: Set<Int> = Set(["<|eot_id|>", "<|end_of_text|>"].compactMap { processor.tokenizer.specialTokenID($0) })
        for start in stride(from: 0, to: questions.count, by: batchSize) {
            let group = Array(questions[start..<min(start + batchSize, questions.count)])
            let readsImages = model is MllamaForConditionalGeneration || model is TokenStreamModel
                || (model is LlavaForConditionalGeneration && clipImageProcessor != nil)
            let usesImages = readsImages && group.allSatisfy { !$0.images.isEmpty }
            var prompts: [[Int]] = []
            for question in group {
                switch promptLayout {
                case .chat:
                    let parts: [ChatMessage.Part] = (usesImages ? question.images.map { _ in .image } : []) + [.text(question.prompt)]
                    prompts.append(try chatFormat.encode([ChatMessage(role: .user, parts: parts)], addGenerationPrompt: true).ids)
                case .caption:
                    let images = String(repeating: processor.imageToken, count: usesImages ? question.images.count : 0)
                    prompts.append(processor.tokenIDs(for: images)
                                   + processor.tokenizer.encode(question.prompt, allowSpecial: false))
                }
            }
            let outputs: [[Int]]
            if let stream = model as? TokenStreamModel {
                if usesImages {
                    let images = group.map { question in question.images.map { blankImages ? Image.black(like: $0) : $0 } }
                    let batch = try processor.imageProcessor.preprocess(images)
                    let expanded = prompts.map { expandImageTokens($0, imageTokenID: processor.imageTokenID, count: stream.imageTokensPerImage) }
                    let decoder = stream.conditioned(pixelValues: batch.pixelValues, aspectRatioIds: batch.aspectRatioIDs,
                                                     aspectRatioMask: batch.aspectRatioMask)
                    outputs = generate(with: decoder, prompts: expanded, maxNewTokens: maxNewTokens, stopTokens: stops, padToken: processor.padTokenID)
                } else {
                    outputs = generate(with: stream, prompts: prompts, maxNewTokens: maxNewTokens, stopTokens: stops, padToken: processor.padTokenID)
                }
            } else if let llava = model as? LlavaForConditionalGeneration {
                if usesImages, let clip = clipImageProcessor {
                    // Every image of the group in the order of its tokens: row by row.
                    let pixels = try clip.preprocess(group.flatMap { question in
                        question.images.map { blankImages ? Image.black(like: $0) : $0 } })                    // (I, C, S, S)
                    let expanded = prompts.map { expandImageTokens($0, imageTokenID: processor.imageTokenID, count: llava.imageTokensPerImage) }
                    outputs = generate(with: llava.conditioned(pixelValues: pixels), prompts: expanded, maxNewTokens: maxNewTokens,
                                       stopTokens: stops, padToken: processor.padTokenID)
                } else {
                    outputs = generate(with: llava, prompts: prompts, maxNewTokens: maxNewTokens, stopTokens: stops, padToken: processor.padTokenID)
                }
            } else if usesImages, let mllama = model as? MllamaForConditionalGeneration {
                let images = group.map { question in question.images.map { blankImages ? Image.black(like: $0) : $0 } }
                let batch = try processor.imageProcessor.preprocess(images)
                let decoder = mllamaDecoder(mllama, prompts: prompts, images: batch, imagesPerPrompt: images.map(\.count).max()!)
                outputs = generate(with: decoder, prompts: prompts, maxNewTokens: maxNewTokens, stopTokens: stops, padToken: processor.padTokenID)
            } else if let mllama = model as? MllamaForConditionalGeneration {
                outputs = generate(with: mllama, prompts: prompts, maxNewTokens: maxNewTokens, stopTokens: stops, padToken: processor.padTokenID)
            } else if let llama = model as? LlamaForCausalLM {
                outputs = generate(with: llama, prompts: prompts, maxNewTokens: maxNewTokens, stopTokens: stops, padToken: processor.padTokenID)
            } else {
                throw TrainingError("question answering does not support \(type(of: model))")
            }
            answers += outputs.map { processor.tokenizer.decode($0.filter { !stops.contains($0) }, skipSpecialTokens: true) }
        }
        return answers
    }

    /// Mllama conditioned on processed images for these prompts: each prompt's tile mask from its
    /// `<|image|>` tokens, left-padded as `generate` pads the prompts.
    func mllamaDecoder(_ mllama: MllamaForConditionalGeneration, prompts: [[Int]], images batch: MllamaImageBatch,
                       imagesPerPrompt n: Int) -> MllamaImageDecoder {
        let g = processor.imageProcessor.config.maxImageTiles
        let masks = zip(prompts, batch.numTiles).map { ids, tiles -> Tensor in
            var dense = [Int](repeating: 0, count: ids.count * n * g)
            for (image, range) in MllamaProcessor.crossAttentionRanges(tokenIDs: ids, imageTokenID: processor.imageTokenID).enumerated() {
                for token in range { for tile in 0..<tiles[image] { dense[(token * n + image) * g + tile] = 1 } }
            }
            return Tensor(indices: dense, shape: [ids.count, n, g])                  // (T, N, X)
        }
        return mllama.conditioned(pixelValues: batch.pixelValues, aspectRatioIds: batch.aspectRatioIDs, aspectRatioMask: batch.aspectRatioMask,
                                  crossAttentionMask: MllamaForConditionalGeneration.leftPaddedCrossAttentionMask(masks))
    }

    /// Exact match over `questions`.
    public func exactMatch(_ questions: [Question], blankImages: Bool = false) throws -> ExactMatchResult {
        let given = try answers(to: questions, blankImages: blankImages)
        var result = ExactMatchResult(correct: 0, total: 0, byType: [:])
        for (question, answer) in zip(questions, given) {
            let right = normalizedAnswer(answer) == normalizedAnswer(question.answer)
            result.total += 1
            result.correct += right ? 1 : 0
            let entry = result.byType[question.type] ?? (0, 0)
            result.byType[question.type] = (entry.correct + (right ? 1 : 0), entry.total + 1)
        }
        return result
    }
}

extension Image {
    /// A black RGB image of the same size.
    public static func black(like image: Image) -> Image {
        Image(width: image.width, height: image.height, layout: .rgb, pixels: [UInt8](repeating: 0, count: image.width * image.height * 3))
    }
}

/// Held-out metrics of a vision model: the loss per learned token, and exact match of greedy
/// answers where the data has reference answers — each also with every image blanked, so that
/// "the model ignores the image" shows at once.
struct Evaluation {
    let model: any TrainableLanguageModel
    let encoder: SampleEncoder
    let datasets: [Dataset]
    /// Samples read from the held-out data (0: all).
    let maxSamples: Int
    let maxNewTokens: Int
    /// The ranks that share the work (nil: this process alone): each takes every N-th held-out batch
    /// and a contiguous share of the questions; the sums are reduced, so every rank gets the metrics.
    var group: (any ProcessGroup)? = nil
    /// Told of each record the loss pass skips (unreadable line, missing image, too long); nil: silent.
    var onSkip: (@Sendable (DataIssue) -> Void)? = nil

    func run() throws -> [String: Double] {
        var metrics: [String: Double] = [:]
        let questions = try self.questions()
        let qa = try QuestionAnswering(model: model, processor: encoder.processor, maxNewTokens: maxNewTokens,
                                       clipImageProcessor: encoder.clipImageProcessor)
        // Blanking means nothing to a model that reads no images.
        for blank in try ModelDataLayout(model).readsImages ? [false, true] : [false] {
            let suffix = blank ? "_blank_images" : ""
            let (loss, samples) = try heldOutLoss(blankImages: blank)
            metrics["loss" + suffix] = loss
            metrics["samples"] = Double(samples)
            guard !questions.isEmpty else { continue }
            let result = try exactMatch(qa, questions, blankImages: blank)
            metrics["exact_match" + suffix] = result.accuracy
            for (type, entry) in result.byType { metrics["exact_match\(suffix)/\(type)"] = Double(entry.correct) / Double(entry.total) }
        }
        return metrics
    }

    /// The mean loss per learned token over the held-out samples, in file order.
    func heldOutLoss(blankImages: Bool) throws -> (loss: Double, samples: Int) {
        let options = DataLoaderOptions(microBatchSize: Self.lossBatchSize(maxSamples: maxSamples), seed: 0, shuffle: false, epochs: 1,
                                        blankImages: blankImages, prefetchBatches: 0, maxSkipShare: 1)
        let loader = try DataLoader(sources: datasets.map { DataSource($0) }, encoder: encoder, options: options,
                                    onSkip: blankImages ? nil : onSkip)
        var total = 0.0, tokens = 0, samples = 0, index = -1
        while let batch = try loader.next(), maxSamples == 0 || samples < maxSamples {
            index += 1
            if let group, index % group.size != group.rank { samples += batch.sampleIDs.count; continue }
            guard batch.lossTokenCount > 0 else { continue }
            let loss = withNoGrad {
                causalLanguageModelLoss(model: model, inputs: batch.inputs, labels: batch.labels, normalizer: batch.lossTokenCount).item()
            }
            total += loss * Double(batch.lossTokenCount)
            tokens += batch.lossTokenCount
            samples += batch.sampleIDs.count
        }
        if let group {
            let sums = try group.sum([total, Double(tokens)])
            (total, tokens) = (sums[0], Int(sums[1]))
        }
        return (tokens == 0 ? .nan : total / Double(tokens), samples)
    }

    /// Batches of 8, or of the largest divisor of `maxSamples` up to 8, so that the loss reads at
    /// most `maxSamples` samples (whole batches are read).
    static func lossBatchSize(maxSamples: Int) -> Int {
        guard maxSamples > 0 else { return 8 }
        return (1...min(8, maxSamples)).last { maxSamples % $0 == 0 }!
    }

    /// Exact match over `questions`, this rank's share answered here and the counts summed over the ranks.
    func exactMatch(_ qa: QuestionAnswering, _ questions: [QuestionAnswering.Question], blankImages: Bool) throws -> ExactMatchResult {
        guard let group else { return try qa.exactMatch(questions, blankImages: blankImages) }
        let share = questions.count * group.rank / group.size ..< questions.count * (group.rank + 1) / group.size
        let local = try qa.exactMatch(Array(questions[share]), blankImages: blankImages)
        let types = Set(questions.map(\.type)).sorted()
        var counts = [Double(local.correct), Double(local.total)]
        for type in types { counts += [Double(local.byType[type]?.correct ?? 0), Double(local.byType[type]?.total ?? 0)] }
        let sums = try group.sum(counts)
        var result = ExactMatchResult(correct: Int(sums[0]), total: Int(sums[1]), byType: [:])
        for (index, type) in types.enumerated() where sums[3 + 2 * index] > 0 {
            result.byType[type] = (Int(sums[2 + 2 * index]), Int(sums[3 + 2 * index]))
        }
        return result
    }

    /// The held-out questions with reference answers, their images decoded.
    func questions() throws -> [QuestionAnswering.Question] {
        questionRecords(in: datasets, maxSamples: maxSamples).map(\.question)
    }
}

/// The question records of `datasets` (at most `maxSamples`, 0: all) that can be read, each with
/// its question and decoded images; other records are passed over.
func questionRecords(in datasets: [Dataset], maxSamples: Int) -> [(record: DatasetRecord, question: QuestionAnswering.Question)] {
    var found: [(record: DatasetRecord, question: QuestionAnswering.Question)] = []
    for dataset in datasets {
        for index in 0..<dataset.count {
            if maxSamples > 0 && found.count >= maxSamples { return found }
            guard case .success(let record) = dataset.record(at: index),
                  case .question(let prompt, let answer, let kind) = record.content else { continue }
            guard let images = try? record.images.map({ try ImageLoading.load($0, for: record.location) }) else { continue }
            found.append((record, .init(id: record.id, prompt: prompt, answer: answer, type: kind ?? "question", images: images)))
        }
    }
    return found
}

/// Evaluates the model in `directory` on held-out files, as a stage's evaluation does: the loss
/// per learned token and, for question–answer data, exact match (overall and `exact_match/TYPE`),
/// each also with the images blanked (`…_blank_images`) for a vision model.
/// - Parameter onSkip: told of each record that cannot be used (named by file and line).
/// - Throws: ``TrainingError`` when no record can be used.
public func evaluateModel(directory: URL, datasets: [URL], maxSamples: Int = 0, maxNewTokens: Int = 16,
                          maxLength: Int = 2048, onSkip: (@Sendable (DataIssue) -> Void)? = nil) throws -> [String: Double] {
    let (model, encoder) = try openForEvaluation(directory: directory, maxLength: maxLength)
    let opened = try datasets.map { try Dataset(path: $0.path) }
    var evaluation = Evaluation(model: model, encoder: encoder, datasets: opened, maxSamples: maxSamples, maxNewTokens: maxNewTokens)
    evaluation.onSkip = onSkip
    let metrics = try evaluation.run()
    guard metrics["samples"] ?? 0 > 0 else {
        throw TrainingError("\(datasets.map(\.path).joined(separator: ", ")): no record could be used for \(directory.path)"
                            + (onSkip == nil ? "" : " (each is named above)"))
    }
    return metrics
}

/// The model in `directory` and a sample encoder with its processor (a text model reads records
/// without their images: the no-vision baseline).
func openForEvaluation(directory: URL, maxLength: Int) throws -> (model: any TrainableLanguageModel, encoder: SampleEncoder) {
    let loaded = try LoadedModel.load(directory: directory)
    let layout = try ModelDataLayout(loaded.model)
    let processor = try loadProcessor(directory: directory, imageTokenID: layout.imageTokenID)
    return (loaded.model, try layout.sampleEncoder(processor: processor, maxLength: maxLength, maxImages: 16,
                                                   clipImages: try loadCLIPImageProcessor(directory: directory)))
}

/// `count` questions with reference answers from `dataset` — every `stride`-th in file order, so
/// that consecutive questions about one picture do not crowd the others out — and the greedy
/// answers of the model in `directory`, for showing next to their pictures.
public func sampleAnswers(directory: URL, dataset: URL, count: Int, stride: Int = 1, maxNewTokens: Int = 16,
                          maxLength: Int = 2048) throws -> [(question: QuestionAnswering.Question, answer: String)] {
    let (model, encoder) = try openForEvaluation(directory: directory, maxLength: maxLength)
    let evaluation = Evaluation(model: model, encoder: encoder, datasets: [try Dataset(path: dataset.path)],
                                maxSamples: count * max(stride, 1), maxNewTokens: maxNewTokens)
    let questions = try evaluation.questions().enumerated().filter { $0.offset % max(stride, 1) == 0 }.map(\.element)
    let qa = try QuestionAnswering(model: model, processor: encoder.processor, maxNewTokens: maxNewTokens,
                                   clipImageProcessor: encoder.clipImageProcessor)
    return zip(questions, try qa.answers(to: questions)).map { ($0, $1) }
}
