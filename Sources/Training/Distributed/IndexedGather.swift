import Collectives
import Foundation

extension ProcessGroup {
    /// Every rank's `values`, keyed by a position in a sequence all ranks share (a micro-batch of
    /// the step, a batch of held-out data, a batch of prompts), merged and in that order: what one
    /// process that computed all of them would hold. Non-finite numbers pass unchanged.
    ///
    /// - Throws: ``CollectiveError`` when the ranks cannot exchange, or when two ranks gave the same position.
    func gatherInIndexOrder<Value: Codable>(_ values: [Int: Value]) throws -> [Value] {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let entries = values.sorted { $0.key < $1.key }.map { IndexedValue(index: $0.key, value: $0.value) }
        var merged: [Int: Value] = [:]
        for (rank, bytes) in try allGather(Array(try encoder.encode(entries))).enumerated() {
            for entry in try decoder.decode([IndexedValue<Value>].self, from: Data(bytes)) {
                guard merged.updateValue(entry.value, forKey: entry.index) == nil else {
                    throw CollectiveError("rank \(rank) sent position \(entry.index), which another rank sent too")
                }
            }
        }
        return merged.sorted { $0.key < $1.key }.map(\.value)
    }
}

private struct IndexedValue<Value: Codable>: Codable {
    var index: Int
    var value: Value
}
