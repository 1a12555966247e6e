import Foundation

/// A dataset and its share of the samples drawn.
public struct DataSource: Sendable {
    public var dataset: Dataset
    /// Relative weight: a dataset of weight 2 is drawn twice as often as one of weight 1.
    public var weight: Double

    public init(_ dataset: Dataset, weight: Double = 1) {
        self.dataset = dataset
        self.weight = weight
    }
}

/// How a ``DataLoader`` draws, prepares and checks samples.
public struct DataLoaderOptions: Sendable {
    /// Samples per batch.
    public var microBatchSize: Int
    /// The seed the whole order derives from.
    public var seed: UInt64
    /// Shuffle each dataset per epoch (training); false reads entries in file order (evaluation).
    public var shuffle: Bool = true
    /// Stop after this many epochs (an epoch is as many draws as all datasets' entries together);
    /// nil for an endless stream.
    public var epochs: Int?
    /// Replace every image by a black image of the same size (the "does the model use the image?" metric).
    public var blankImages: Bool = false
    /// Batches prepared ahead on a background thread; 0 prepares each batch when asked.
    public var prefetchBatches: Int = 2
    /// The largest share of samples seen that may be skipped before the loader stops with an error.
    public var maxSkipShare: Double = 0.01
    /// Samples seen before the share is checked, so that one early bad sample is not "100 %".
    public var minimumSamplesForSkipCheck: Int = 100

    public init(microBatchSize: Int, seed: UInt64, shuffle: Bool = true, epochs: Int? = nil, blankImages: Bool = false,
                prefetchBatches: Int = 2, maxSkipShare: Double = 0.01, minimumSamplesForSkipCheck: Int = 100) {
        self.microBatchSize = microBatchSize
        self.seed = seed
        self.shuffle = shuffle
        self.epochs = epochs
        self.blankImages = blankImages
        self.prefetchBatches = prefetchBatches
        self.maxSkipShare = maxSkipShare
        self.minimumSamplesForSkipCheck = minimumSamplesForSkipCheck
    }
}

/// Draws samples from weighted datasets in an order fixed by the seed, encodes them, decodes and
/// processes their images, and batches them, on a background thread ahead of the consumer.
///
/// ```swift
/// let loader = try DataLoader(sources: [DataSource(pairs, weight: 3), DataSource(shards)], encoder: encoder,
///                             options: DataLoaderOptions(microBatchSize: 4, seed: 7),
///                             resumingFrom: savedPosition) { issue in log.warn("\(issue)") }
/// while let batch = try loader.next() {
///     step(batch)                          // batch.dataWaitSeconds: time spent waiting for it
///     checkpoint.dataPosition = loader.position
/// }
/// ```
///
/// Bad samples (a missing or undecodable image, empty text, too many tokens or images, a malformed
/// line or tar member) are skipped, counted per cause in ``skipCounts`` and reported once each
/// (per file and line or member) through `onSkip`, called on the consumer's thread from ``next()``.
/// When more than ``DataLoaderOptions/maxSkipShare`` of the samples seen are skipped, ``next()``
/// throws a ``DataError`` naming the counts.
public final class DataLoader {
    public let options: DataLoaderOptions
    /// Where the loader is after the last batch ``next()`` returned: save it with the run to resume.
    public private(set) var position: DataPosition
    private let producer: BatchProducer
    private let queue: PrefetchQueue?
    private let onSkip: (@Sendable (DataIssue) -> Void)?
    private var reported: Set<RecordLocation> = []
    private var finished = false
    private var failure: Error?

    /// - Parameters:
    ///   - sources: The datasets and their weights (positive).
    ///   - encoder: Turns records into ids and labels; its processor also processes the images.
    ///   - position: A position saved from a loader over the same datasets, to continue from; nil to start.
    ///   - onSkip: Called once per bad record location, in order, from ``next()``.
    /// - Throws: ``DataError`` when there are no sources, a weight is not positive, the micro-batch
    ///   size is below 1, or `position` belongs to other datasets.
    public init(sources: [DataSource], encoder: SampleEncoder, options: DataLoaderOptions,
                resumingFrom position: DataPosition? = nil, onSkip: (@Sendable (DataIssue) -> Void)? = nil) throws {
        guard !sources.isEmpty else { throw DataError("no datasets to load") }
        if let bad = sources.first(where: { !($0.weight > 0) || !$0.weight.isFinite }) {
            throw DataError("\(bad.dataset.path): weight must be a positive number, got \(bad.weight)")
        }
        guard options.microBatchSize >= 1 else { throw DataError("the micro-batch size must be at least 1, got \(options.microBatchSize)") }
        let datasets = sources.map(\.dataset)
        let start = DataPosition(datasets: datasets)
        if let position, position.datasets != start.datasets || position.cursors.count != datasets.count {
            throw DataError("the saved data position is for other datasets (\(position.datasets.joined(separator: ", "))) "
                + "than these (\(start.datasets.joined(separator: ", ")))")
        }
        self.options = options
        self.position = position ?? start
        self.onSkip = onSkip
        producer = BatchProducer(datasets: datasets, weights: sources.map(\.weight), encoder: encoder, options: options,
                                 position: position ?? start)
        queue = options.prefetchBatches > 0 ? PrefetchQueue(producer: producer, capacity: options.prefetchBatches) : nil
    }

    deinit { queue?.stop() }

    /// Skips so far, per cause.
    public var skipCounts: SkipCounts { position.skipCounts }
    /// Samples drawn so far, good or skipped.
    public var samplesSeen: Int { position.draws }
    /// Draws that make one epoch: all datasets' entries together.
    public var drawsPerEpoch: Int { producer.datasets.reduce(0) { $0 + $1.count } }
    /// Epochs completed, fractionally (`samplesSeen / drawsPerEpoch`).
    public var epochProgress: Double { Double(samplesSeen) / Double(drawsPerEpoch) }

    /// The next batch in the seed's order, or nil when the configured epochs are done.
    ///
    /// - Throws: ``DataError`` when too many samples were skipped or a record cannot be used at all;
    ///   the loader is finished after an error.
    public func next() throws -> TrainingBatch? {
        if let failure { throw failure }
        let produced: BatchProducer.Produced?, waited: Double
        do {
            if let queue {
                (produced, waited) = try queue.take()
            } else {
                let start = DispatchTime.now().uptimeNanoseconds
                produced = finished ? nil : try producer.next()
                waited = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            }
        } catch {
            failure = error
            throw error
        }
        guard let produced else { return nil }
        for issue in produced.issues where reported.insert(issue.location).inserted { onSkip?(issue) }
        position = produced.position
        guard var batch = produced.batch else { finished = true; return nil }
        batch.dataWaitSeconds = waited
        return batch
    }
}

/// A bounded queue filled by one background thread running the producer.
final class PrefetchQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [Result<BatchProducer.Produced, Error>] = []
    private var stopped = false
    private var finished = false
    let capacity: Int

    init(producer: BatchProducer, capacity: Int) {
        self.capacity = capacity
        let thread = Thread { [self] in self.run(producer) }
        thread.name = "VLMKit data prefetch"
        thread.start()
    }

    private func run(_ producer: BatchProducer) {
        while true {
            let result = Result { try producer.next() }
            condition.lock()
            while items.count >= capacity && !stopped { condition.wait() }
            if stopped { condition.unlock(); return }
            items.append(result)
            condition.broadcast()
            condition.unlock()
            if case .success(let produced) = result, produced.batch != nil { continue }
            return   // an error or the end: nothing follows
        }
    }

    /// The next item and the seconds spent waiting for it.
    func take() throws -> (BatchProducer.Produced?, Double) {
        condition.lock()
        defer { condition.unlock() }
        let start = DispatchTime.now().uptimeNanoseconds
        while items.isEmpty && !finished { condition.wait() }
        let waited = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        guard !items.isEmpty else { return (nil, waited) }
        let item = items.removeFirst()
        condition.broadcast()
        switch item {
        case .success(let produced):
            if produced.batch == nil { finished = true }
            return (produced, waited)
        case .failure(let error):
            finished = true
            throw error
        }
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }
}
