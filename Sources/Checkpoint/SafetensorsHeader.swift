/// Where one tensor lives in a safetensors file, as its header declares it.
public struct TensorInfo: Sendable, Equatable {
    /// The tensor's name, spelled as in the checkpoint (`model.layers.0.self_attn.q_proj.weight`).
    public let name: String
    /// The element type as the header names it.
    public let dtype: SafetensorsDType
    /// The size of each dimension (empty for a scalar).
    public let shape: [Int]
    /// Byte range within the data region (which starts right after the header).
    public let dataOffsets: Range<Int>

    public init(name: String, dtype: SafetensorsDType, shape: [Int], dataOffsets: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
    }

    /// The number of bytes of data.
    public var byteCount: Int { dataOffsets.count }
    /// The number of elements.
    public var elementCount: Int { shape.reduce(1, *) }
}

/// The parsed, validated header of a safetensors file.
///
/// Layout: an 8-byte little-endian header length N, N bytes of JSON (an object of tensor entries
/// `{"dtype", "shape", "data_offsets"}` plus an optional `__metadata__` string map), then the data
/// region. Validation is strict: every problem listed in Docs/formats.md is an error naming the
/// file, so a damaged file never produces a tensor that reads out of bounds.
struct SafetensorsHeader {
    /// Tensors in the order the header lists them.
    var tensors: [TensorInfo]
    var metadata: [String: String]
    /// Where the data region starts (8 + N).
    var dataStart: Int

    /// safetensors itself refuses headers above 100 MB; so do we, before allocating anything.
    static let maximumHeaderBytes = 100_000_000

    /// Parses and validates the header at the start of `bytes`, a whole file of `bytes.count` bytes.
    static func parse(_ bytes: UnsafeRawBufferPointer, file: String) throws -> SafetensorsHeader {
        func fail(_ reason: String) -> CheckpointError { CheckpointError(file: file, reason: reason) }
        guard bytes.count >= 8 else {
            throw fail("file is \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard length <= UInt64(bytes.count - 8) else {
            // Any file that is not safetensors lands here: its first 8 bytes read as a huge length.
            throw fail("not a safetensors file: header length \(length) (its first 8 bytes) is larger than the "
                       + "\(bytes.count - 8) bytes after the length field")
        }
        guard length <= UInt64(maximumHeaderBytes) else {
            throw fail("header length \(length) exceeds the \(maximumHeaderBytes)-byte limit")
        }
        let headerLength = Int(length)
        let dataStart = 8 + headerLength
        let dataCount = bytes.count - dataStart
        let json: _JSONValue
        do {
            json = try _JSONParser.parse(UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart]))
        } catch let error as _JSONSyntaxError {
            throw fail("header is not valid JSON (\(error.message) at header byte \(error.offset))")
        }
        guard case .object(let members) = json else { throw fail("header is \(json.kind), not a JSON object") }

        var tensors: [TensorInfo] = []
        var metadata: [String: String] = [:]
        var seen = Set<String>()
        for (name, entry) in members {
            guard seen.insert(name).inserted else { throw fail("duplicate entry '\(name)' in header") }
            if name == "__metadata__" {
                guard case .object(let pairs) = entry else { throw fail("__metadata__ is \(entry.kind), not an object of strings") }
                for (key, value) in pairs {
                    guard let text = value.string else { throw fail("__metadata__ '\(key)' is \(value.kind), not a string") }
                    metadata[key] = text
                }
                continue
            }
            tensors.append(try parseEntry(name: name, entry: entry, dataCount: dataCount, fail: fail))
        }
        try checkNoOverlap(tensors, fail: fail)
        return SafetensorsHeader(tensors: tensors, metadata: metadata, dataStart: dataStart)
    }

    private static func parseEntry(name: String, entry: _JSONValue, dataCount: Int,
                                   fail: (String) -> CheckpointError) throws -> TensorInfo {
        guard case .object(let fields) = entry else { throw fail("tensor '\(name)' is \(entry.kind), not an object") }
        func field(_ key: String) throws -> _JSONValue {
            guard let value = fields.first(where: { $0.key == key })?.value else {
                throw fail("tensor '\(name)' has no '\(key)'")
            }
            return value
        }
        for (key, _) in fields where !["dtype", "shape", "data_offsets"].contains(key) {
            throw fail("tensor '\(name)' has unknown field '\(key)'")
        }
        guard let dtypeName = try field("dtype").string else { throw fail("tensor '\(name)' has a dtype that is not a string") }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else { throw fail("tensor '\(name)' has unknown dtype '\(dtypeName)'") }

        guard case .array(let dims) = try field("shape") else { throw fail("tensor '\(name)' has a shape that is not an array") }
        var shape: [Int] = []
        var elements = 1
        for dim in dims {
            guard let size = dim.integer, size >= 0 else {
                throw fail("tensor '\(name)' has shape dimension \(dim.description) that is not a non-negative integer")
            }
            let (product, overflow) = elements.multipliedReportingOverflow(by: size)
            guard !overflow else { throw fail("tensor '\(name)' has a shape whose element count overflows") }
            elements = product
            shape.append(size)
        }

        guard case .array(let offsets) = try field("data_offsets"), offsets.count == 2,
              let begin = offsets[0].integer, let end = offsets[1].integer else {
            throw fail("tensor '\(name)' has data_offsets that are not two integers")
        }
        guard begin >= 0, end >= 0 else { throw fail("tensor '\(name)' has negative data_offsets [\(begin), \(end)]") }
        guard begin <= end else { throw fail("tensor '\(name)' has data_offsets [\(begin), \(end)] with begin > end") }
        guard end <= dataCount else {
            throw fail("tensor '\(name)' has data_offsets [\(begin), \(end)] beyond the \(dataCount)-byte data region")
        }
        let (expected, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, expected == end - begin else {
            throw fail("tensor '\(name)' holds \(end - begin) bytes but shape \(shape) of \(dtype.rawValue) needs \(overflow ? "more" : String(expected))")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    private static func checkNoOverlap(_ tensors: [TensorInfo], fail: (String) -> CheckpointError) throws {
        let ordered = tensors.filter { !$0.dataOffsets.isEmpty }.sorted { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound }
        for (previous, next) in zip(ordered, ordered.dropFirst()) where next.dataOffsets.lowerBound < previous.dataOffsets.upperBound {
            throw fail("tensors '\(previous.name)' \(previous.dataOffsets) and '\(next.name)' \(next.dataOffsets) overlap")
        }
    }
}

extension _JSONValue: CustomStringConvertible {
    var description: String {
        switch self {
        case .number(let text): text
        case .string(let s): _JSONWriter.quoted(s)
        case .bool(let b): String(b)
        case .null: "null"
        case .array: "an array"
        case .object: "an object"
        }
    }
}
