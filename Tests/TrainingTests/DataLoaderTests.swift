import Foundation
import Testing
@testable import Training

/// A pairs dataset of `count` captions over three small images, and a questions dataset.
private struct Fixture {
    let directory: TemporaryDirectory
    let pairs: Dataset
    let questions: Dataset

    init(pairCount: Int = 12) throws {
        directory = try TemporaryDirectory()
        try directory.writePNG("img/red.png", width: 20, height: 12, color: [220, 20, 20])
        try directory.writePNG("img/green.png", width: 12, height: 30, color: [20, 220, 20])
        try directory.writePNG("img/blue.png", width: 40, height: 40, color: [20, 20, 220])
        let colours = ["red", "green", "blue"]
        let pairLines = (0 ..< pairCount).map { i in
            "{\"id\": \"p\(i)\", \"image\": \"img/\(colours[i % 3]).png\", \"text\": \"A \(colours[i % 3]) picture number \(i).\"}"
        }
        pairs = try Dataset(path: try directory.write("pairs.jsonl", pairLines.joined(separator: "\n")))
        let questionLines = (0 ..< 5).map { i in
            "{\"id\": \"q\(i)\", \"image\": \"img/\(colours[i % 3]).png\", \"question\": \"Colour?\", \"answer\": \"\(colours[i % 3])\"}"
        }
        questions = try Dataset(path: try directory.write("qa.jsonl", questionLines.joined(separator: "\n")))
    }
}

private func loader(_ sources: [DataSource], seed: UInt64 = 1, batch: Int = 3, prefetch: Int = 2, epochs: Int? = nil,
                    shuffle: Bool = true, blank: Bool = false, maxSkipShare: Double = 0.01, minimum: Int = 100,
                    from position: DataPosition? = nil, onSkip: (@Sendable (DataIssue) -> Void)? = nil) throws -> DataLoader {
    try DataLoader(sources: sources, encoder: DataTestSupport.encoder(),
                   options: DataLoaderOptions(microBatchSize: batch, seed: seed, shuffle: shuffle, epochs: epochs, blankImages: blank,
                                              prefetchBatches: prefetch, maxSkipShare: maxSkipShare, minimumSamplesForSkipCheck: minimum),
                   resumingFrom: position, onSkip: onSkip)
}

/// Everything a batch holds, for exact comparison.
private struct BatchContents: Equatable {
    var ids: [String], inputIDs: [Int], attention: [Int]?, labels: [Int], lossTokens: Int
    var pixels: [Float]?, aspectIDs: [Int]?, aspectMask: [Int]?, cross: [Int]?

    init(_ batch: TrainingBatch) {
        ids = batch.sampleIDs
        inputIDs = batch.inputs.inputIDs.integers()
        attention = batch.inputs.attentionMask?.integers()
        labels = batch.labels.integers()
        lossTokens = batch.lossTokenCount
        pixels = batch.inputs.pixelValues?.floats()
        aspectIDs = batch.inputs.aspectRatioIDs?.integers()
        aspectMask = batch.inputs.aspectRatioMask?.integers()
        cross = batch.inputs.crossAttentionMask?.integers()
    }
}

private func take(_ count: Int, from loader: DataLoader) throws -> [BatchContents] {
    try (0 ..< count).map { _ in BatchContents(try #require(try loader.next())) }
}

/// Collects warnings from the loader's callback.
private final class Warnings: @unchecked Sendable {
    private let lock = NSLock()
    private var issues: [DataIssue] = []
    func add(_ issue: DataIssue) { lock.lock(); issues.append(issue); lock.unlock() }
    var all: [DataIssue] { lock.lock(); defer { lock.unlock() }; return issues }
}

@Suite struct DataLoaderTests {
    @Test func theOrderIsAFunctionOfTheSeed() throws {
        let data = try Fixture()
        let sources = [DataSource(data.pairs, weight: 2), DataSource(data.questions)]
        let first = try take(6, from: try loader(sources, seed: 7))
        let again = try take(6, from: try loader(sources, seed: 7))
        let other = try take(6, from: try loader(sources, seed: 8))
        #expect(first == again)
        #expect(first.map(\.ids) != other.map(\.ids))
    }

    @Test func oneEpochDrawsEveryEntryOnceThenEnds() throws {
        let data = try Fixture(pairCount: 10)
        let shuffled = try loader([DataSource(data.pairs)], batch: 4, epochs: 1)
        var ids: [String] = []
        while let batch = try shuffled.next() { ids += batch.sampleIDs }
        #expect(ids.count == 10 && Set(ids).count == 10)
        #expect(ids != (0 ..< 10).map { "p\($0)" })   // shuffled (a fixed seed, so this is not flaky)
        #expect(try shuffled.next() == nil)

        let ordered = try loader([DataSource(data.pairs)], batch: 4, prefetch: 0, epochs: 1, shuffle: false)
        var inOrder: [[String]] = []
        while let batch = try ordered.next() { inOrder.append(batch.sampleIDs) }
        #expect(inOrder == [["p0", "p1", "p2", "p3"], ["p4", "p5", "p6", "p7"], ["p8", "p9"]])
    }

    @Test func weightsSetTheShareOfEachDataset() throws {
        let data = try Fixture(pairCount: 6)
        let mixed = try loader([DataSource(data.pairs, weight: 3), DataSource(data.questions, weight: 1)], batch: 8, prefetch: 0)
        var fromPairs = 0, total = 0
        for _ in 0 ..< 50 {
            let batch = try #require(try mixed.next())
            fromPairs += batch.sampleIDs.filter { $0.hasPrefix("p") }.count
            total += batch.sampleIDs.count
        }
        // 400 draws at p = 0.75: the standard deviation of the share is 0.022; allow 3.
        #expect(abs(Double(fromPairs) / Double(total) - 0.75) < 0.066)
        #expect(mixed.position.cursors[0].epoch > 10)   // the small set cycles through many epochs
    }

    @Test func resumingFromASavedPositionGivesTheSameNextBatches() throws {
        let data = try Fixture()
        let sources = [DataSource(data.pairs, weight: 2), DataSource(data.questions)]
        let uninterrupted = try loader(sources, seed: 3)
        _ = try take(3, from: uninterrupted)
        let saved = try JSONEncoder().encode(uninterrupted.position)
        let expected = try take(5, from: uninterrupted)

        let position = try JSONDecoder().decode(DataPosition.self, from: saved)
        let resumed = try loader(sources, seed: 3, from: position)
        #expect(try take(5, from: resumed) == expected)
        #expect(resumed.position == uninterrupted.position)
    }

    @Test func aPositionFromOtherDataIsRefused() throws {
        let data = try Fixture()
        let position = try loader([DataSource(data.pairs)]).position
        #expect { try loader([DataSource(data.questions)], from: position) } throws: { "\($0)".contains("other datasets") }
    }

    @Test func prefetchingDoesNotChangeTheBatches() throws {
        let data = try Fixture()
        let sources = [DataSource(data.pairs), DataSource(data.questions)]
        let ahead = try loader(sources, seed: 11, prefetch: 3)
        let inline = try loader(sources, seed: 11, prefetch: 0)
        #expect(try take(8, from: ahead) == take(8, from: inline))
        #expect(ahead.position == inline.position)
    }

    /// Without prefetching the step waits for the whole preparation; with it, a consumer that was
    /// busy for a second finds the next batch ready.
    @Test func theWaitForEachBatchIsMeasured() throws {
        let data = try Fixture()
        let inline = try loader([DataSource(data.pairs)], prefetch: 0)
        let waits = try (0 ..< 3).map { _ in try #require(try inline.next()).dataWaitSeconds }
        #expect(waits.allSatisfy { $0 > 0 && $0 < 60 })

        let ahead = try loader([DataSource(data.pairs)], prefetch: 2)
        _ = try ahead.next()
        Thread.sleep(forTimeInterval: 1)
        let ready = try #require(try ahead.next()).dataWaitSeconds
        #expect(ready >= 0 && ready < 0.05)
    }

    @Test func badLoaderSettingsAreRefused() throws {
        let data = try Fixture()
        #expect { try loader([DataSource(data.pairs, weight: 0)]) } throws: { "\($0)".contains("weight must be a positive number") }
        #expect { try loader([DataSource(data.pairs)], batch: 0) } throws: { "\($0)".contains("micro-batch size") }
        #expect(throws: DataError.self) { try loader([]) }
    }

    @Test func blankImagesKeepTheTextAndBlackenThePixels() throws {
        let data = try Fixture()
        let normal = try #require(try loader([DataSource(data.pairs)], seed: 5).next())
        let blanked = try #require(try loader([DataSource(data.pairs)], seed: 5, blank: true).next())
        #expect(normal.inputs.inputIDs.integers() == blanked.inputs.inputIDs.integers())
        #expect(normal.inputs.aspectRatioIDs?.integers() == blanked.inputs.aspectRatioIDs?.integers())
        // Black normalised with mean 0.5 and std 0.5 is −1; padding is black too, padding images 0.
        let pixels = try #require(blanked.inputs.pixelValues?.floats())
        #expect(pixels.allSatisfy { $0 == -1 || $0 == 0 } && pixels.contains(-1))
        #expect(normal.inputs.pixelValues?.floats().contains { $0 != -1 && $0 != 0 } == true)
    }

    /// One bad sample of each cause in a file of 12 lines: each is skipped and counted every time it
    /// is drawn, and reported once; the good ones all arrive.
    @Test func badSamplesAreSkippedCountedAndReportedOnce() throws {
        let directory = try TemporaryDirectory()
        try directory.writePNG("ok.png")
        try directory.write("broken.png", "not a png")
        var lines = (0 ..< 6).map { "{\"id\": \"g\($0)\", \"image\": \"ok.png\", \"text\": \"good \($0)\"}" }
        lines += ["{\"id\": \"m\", \"image\": \"absent.png\", \"text\": \"x\"}",
                  "{\"id\": \"u\", \"image\": \"broken.png\", \"text\": \"x\"}",
                  "{\"id\": \"e\", \"image\": \"ok.png\", \"text\": \"\"}",
                  "{\"id\": \"j\", \"image\": \"ok.png\", \"text\": ",
                  "{\"id\": \"l\", \"image\": \"ok.png\", \"text\": \"\(String(repeating: "long ", count: 200))\"}",
                  "{\"id\": \"g6\", \"image\": \"ok.png\", \"text\": \"good 6\"}"]
        let file = try directory.write("mixed.jsonl", lines.joined(separator: "\n"))
        let warnings = Warnings()
        let bad = try loader([DataSource(try Dataset(path: file))], batch: 2, epochs: 2, maxSkipShare: 1,
                             onSkip: { warnings.add($0) })
        var ids: [String] = []
        while let batch = try bad.next() { ids += batch.sampleIDs }
        #expect(ids.count == 14 && Set(ids) == Set((0 ..< 7).map { "g\($0)" }))
        let counts = bad.skipCounts
        #expect(counts[.missingImage] == 2 && counts[.undecodableImage] == 2 && counts[.emptyText] == 2)
        #expect(counts[.malformedRecord] == 2 && counts[.overLength] == 2 && counts.total == 10)
        #expect(bad.samplesSeen == 24 && bad.drawsPerEpoch == 12 && bad.epochProgress == 2)
        let reported = warnings.all.map(\.location.description)
        #expect(reported.count == 5 && Set(reported) == Set((7 ... 11).map { "\(file):\($0)" }))
        #expect(warnings.all.first { $0.cause == .missingImage }?.description.contains("absent.png") == true)
        let saved = try JSONDecoder().decode(DataPosition.self, from: JSONEncoder().encode(bad.position))
        #expect(saved == bad.position && saved.skipCounts.total == 10)
    }

    @Test func tooManySkipsStopTheLoaderWithTheCounts() throws {
        let directory = try TemporaryDirectory()
        try directory.writePNG("ok.png")
        var lines = (0 ..< 18).map { "{\"id\": \"g\($0)\", \"image\": \"ok.png\", \"text\": \"good\"}" }
        lines += ["{\"id\": \"m1\", \"image\": \"gone.png\", \"text\": \"x\"}", "{\"id\": \"m2\", \"image\": \"gone2.png\", \"text\": \"x\"}"]
        let file = try directory.write("tenth.jsonl", lines.joined(separator: "\n"))
        // 10 % bad: fine under a 20 % limit, an error under 5 % once 10 samples were seen.
        let tolerant = try loader([DataSource(try Dataset(path: file))], batch: 4, epochs: 3, maxSkipShare: 0.2, minimum: 10)
        while try tolerant.next() != nil {}
        #expect(tolerant.skipCounts[.missingImage] == 6)

        let strict = try loader([DataSource(try Dataset(path: file))], batch: 4, epochs: 3, maxSkipShare: 0.05, minimum: 10)
        #expect {
            while try strict.next() != nil {}
        } throws: { error in
            let text = "\(error)"
            return error is DataError && text.contains("too much bad data") && text.contains("missing image")
        }
        #expect(throws: DataError.self) { try strict.next() }   // stays failed

        // With no limit on the share, a stream with nothing usable still ends in an error, not a hang.
        let hopeless = try loader([DataSource(try Dataset(path: try directory.write("none.jsonl", lines.suffix(2).joined(separator: "\n"))))],
                                  prefetch: 0, maxSkipShare: 1)
        #expect { try hopeless.next() } throws: { "\($0)".contains("no usable samples") }
    }
}
