import TensorCore

/// Where a loader is in its data: what a run checkpoint saves so that a new loader continues with
/// exactly the batches the old one would have produced next.
public struct DataPosition: Codable, Equatable, Sendable {
    /// One dataset's place in its own sequence of epochs.
    public struct Cursor: Codable, Equatable, Sendable {
        /// Completed passes over the dataset.
        public var epoch: Int
        /// Entries of the current epoch's permutation already drawn.
        public var offset: Int
    }

    /// Samples drawn so far, good or skipped ("samples seen").
    public var draws: Int
    /// One cursor per dataset, in the loader's order.
    public var cursors: [Cursor]
    /// Skips so far, per cause.
    public var skipCounts: SkipCounts
    /// `path (entries)` of each dataset, so resuming with different data is an error, not a silent change.
    public var datasets: [String]

    /// The start of the data.
    public init(datasets: [Dataset]) {
        draws = 0
        cursors = datasets.map { _ in Cursor(epoch: 0, offset: 0) }
        skipCounts = SkipCounts()
        self.datasets = datasets.map { "\($0.path) (\($0.count))" }
    }
}

/// The order samples are drawn in, a pure function of the seed: for draw `k`, a dataset chosen with
/// probability proportional to its weight (a generator seeded from the seed and `k`), then the next
/// entry of that dataset's permutation for its current epoch (Fisher–Yates, seeded from the seed,
/// the dataset's index and the epoch). Nothing depends on timing or threads.
struct DataOrder {
    let seed: UInt64
    let counts: [Int]
    /// Cumulative weights, normalised, the last exactly 1.
    let cumulativeWeights: [Double]
    let shuffle: Bool
    private var permutations: [Int: (epoch: Int, order: [Int])] = [:]

    init(seed: UInt64, counts: [Int], weights: [Double], shuffle: Bool) {
        self.seed = seed
        self.counts = counts
        self.shuffle = shuffle
        let total = weights.reduce(0, +)
        var running = 0.0
        var cumulative = weights.map { weight -> Double in running += weight / total; return running }
        cumulative[cumulative.count - 1] = 1
        cumulativeWeights = cumulative
    }

    /// The dataset and entry of the next draw, advancing `position`.
    mutating func next(_ position: inout DataPosition) -> (dataset: Int, entry: Int) {
        var dataset = 0
        if counts.count > 1 {
            var generator = RandomGenerator(seed: Self.derive(seed, 0x6368_6f69_6365, UInt64(position.draws)))
            let u = generator.nextUniform()
            dataset = cumulativeWeights.firstIndex { u < $0 } ?? counts.count - 1
        }
        let cursor = position.cursors[dataset]
        let entry = shuffle ? permutation(dataset: dataset, epoch: cursor.epoch)[cursor.offset] : cursor.offset
        position.draws += 1
        position.cursors[dataset].offset += 1
        if position.cursors[dataset].offset == counts[dataset] {
            position.cursors[dataset] = DataPosition.Cursor(epoch: cursor.epoch + 1, offset: 0)
        }
        return (dataset, entry)
    }

    private mutating func permutation(dataset: Int, epoch: Int) -> [Int] {
        if let cached = permutations[dataset], cached.epoch == epoch { return cached.order }
        let order = Self.shuffledIndices(count: counts[dataset], seed: Self.derive(seed, 0x7065_726d, UInt64(dataset), UInt64(epoch)))
        permutations[dataset] = (epoch, order)
        return order
    }

    /// `0..<count` in a Fisher–Yates order drawn from a generator seeded with `seed`.
    static func shuffledIndices(count: Int, seed: UInt64) -> [Int] {
        var generator = RandomGenerator(seed: seed)
        var order = Array(0 ..< count)
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(generator.next() % UInt64(i + 1)))
        }
        return order
    }

    /// A seed mixed from several numbers through SplitMix64 steps.
    static func derive(_ seed: UInt64, _ parts: UInt64...) -> UInt64 {
        var generator = RandomGenerator(seed: seed)
        for part in parts { generator = RandomGenerator(seed: generator.next() ^ part) }
        return generator.next()
    }
}
