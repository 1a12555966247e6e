import Dispatch
import Foundation

/// Produces the loader's batches in order: plans draws with ``DataOrder``, prepares a window of
/// samples in parallel (read, encode, decode and process images), then takes them in draw order,
/// skipping and counting bad ones, until a micro-batch is full. The result does not depend on how
/// many threads prepared it; the loader runs this on a background thread to prefetch.
final class BatchProducer: @unchecked Sendable {
    /// A batch with what the loader needs alongside it.
    struct Produced {
        /// Nil at the end of a finite stream (the position and issues still count the last draws).
        var batch: TrainingBatch?
        /// The position after the batch's last draw.
        var position: DataPosition
        /// The samples skipped while filling it, in order.
        var issues: [DataIssue]
    }

    private enum Outcome {
        case sample(PreparedSample)
        case skip(DataIssue)
        case fatal(Error)
    }

    private struct Draw {
        var outcome: Outcome
        var positionAfter: DataPosition
    }

    let datasets: [Dataset]
    let encoder: SampleEncoder
    let options: DataLoaderOptions
    private var order: DataOrder
    /// The planner's position: ahead of the consumer by the prepared window.
    private var planned: DataPosition
    /// The position after the last draw taken into a batch.
    private var taken: DataPosition
    private var window: [Draw] = []
    private let drawLimit: Int?
    /// Skips in a row after which an endless stream gives up: no usable sample is left to find.
    private let hopelessRun: Int
    private var skipsInARow = 0

    init(datasets: [Dataset], weights: [Double], encoder: SampleEncoder, options: DataLoaderOptions, position: DataPosition) {
        self.datasets = datasets
        self.encoder = encoder
        self.options = options
        order = DataOrder(seed: options.seed, counts: datasets.map(\.count), weights: weights, shuffle: options.shuffle)
        planned = position
        taken = position
        let entries = datasets.reduce(0) { $0 + $1.count }
        drawLimit = options.epochs.map { $0 * entries }
        hopelessRun = 2 * entries + 100
    }

    /// The next batch; its `batch` is nil when a finite number of epochs is done.
    ///
    /// - Throws: ``DataError`` when the share of skipped samples passes the limit, or a record
    ///   cannot be used by this loader at all.
    func next() throws -> Produced {
        var samples: [PreparedSample] = []
        var issues: [DataIssue] = []
        while samples.count < options.microBatchSize {
            if window.isEmpty { refill() }
            guard !window.isEmpty else { break }
            let draw = window.removeFirst()
            let counts = taken.skipCounts
            taken = draw.positionAfter
            taken.skipCounts = counts
            switch draw.outcome {
            case .sample(let sample):
                samples.append(sample)
                skipsInARow = 0
            case .fatal(let error): throw error
            case .skip(let issue):
                taken.skipCounts.add(issue.cause)
                issues.append(issue)
                let seen = taken.draws, skipped = taken.skipCounts.total
                if seen >= options.minimumSamplesForSkipCheck && Double(skipped) > options.maxSkipShare * Double(seen) {
                    throw DataError("too much bad data: \(skipped) of \(seen) samples seen were skipped (\(taken.skipCounts)), "
                        + "more than the \(options.maxSkipShare * 100)% allowed; the last: \(issue)")
                }
                skipsInARow += 1
                if skipsInARow >= hopelessRun {
                    throw DataError("no usable samples: the last \(skipsInARow) drawn were all skipped (\(taken.skipCounts)); the last: \(issue)")
                }
            }
        }
        let batch = samples.isEmpty ? nil : BatchCollation.collate(samples, processor: encoder.processor)
        return Produced(batch: batch, position: taken, issues: issues)
    }

    /// Plans the next window of draws and prepares them in parallel.
    private func refill() {
        var plans: [(dataset: Int, entry: Int, after: DataPosition)] = []
        while plans.count < max(options.microBatchSize, 2) {
            if let limit = drawLimit, planned.draws >= limit { break }
            let (dataset, entry) = order.next(&planned)
            plans.append((dataset, entry, planned))
        }
        guard !plans.isEmpty else { return }
        var outcomes = [Outcome?](repeating: nil, count: plans.count)
        let datasets = self.datasets, encoder = self.encoder, blank = options.blankImages
        outcomes.withUnsafeMutableBufferPointer { results in
            let results = results
            DispatchQueue.concurrentPerform(iterations: plans.count) { index in
                let plan = plans[index]
                results[index] = Self.prepare(datasets[plan.dataset].record(at: plan.entry), encoder: encoder, blankImages: blank)
            }
        }
        window += zip(outcomes, plans).map { Draw(outcome: $0!, positionAfter: $1.after) }
    }

    private static func prepare(_ entry: Result<DatasetRecord, DataIssue>, encoder: SampleEncoder, blankImages: Bool) -> Outcome {
        do {
            let record = try entry.get()
            let sample = try encoder.encode(record)
            return .sample(try BatchCollation.prepare(sample, processor: encoder.processor, blankImages: blankImages,
                                                      clipImages: encoder.clipImageProcessor))
        } catch let issue as DataIssue {
            return .skip(issue)
        } catch {
            return .fatal(error)
        }
    }
}
