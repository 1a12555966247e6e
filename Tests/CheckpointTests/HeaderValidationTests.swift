import Testing
@testable import Checkpoint

/// One test per header problem: each must throw a ``CheckpointError`` whose message names the file
/// and says what is wrong.
@Suite("Header validation")
struct HeaderValidationTests {
    private func expectError(_ bytes: [UInt8], mentioning phrases: String..., sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try openImage(bytes, name: "bad.safetensors")
            Issue.record("expected an error mentioning \(phrases)", sourceLocation: sourceLocation)
        } catch let error as CheckpointError {
            #expect(error.file == "bad.safetensors", sourceLocation: sourceLocation)
            for phrase in phrases {
                #expect(error.description.contains(phrase), "\(error) should mention \(phrase)", sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
        }
    }

    private let good = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

    @Test("The well-formed baseline loads")
    func baseline() throws {
        let file = try openImage(safetensorsImage(header: good, data: Array(repeating: 0, count: 8)))
        #expect(file.names == ["a"])
    }

    @Test("A file shorter than 8 bytes")
    func tooShort() {
        expectError([1, 2, 3], mentioning: "shorter than the 8-byte header length")
        expectError([], mentioning: "0 bytes")
    }

    @Test("A header length larger than the file")
    func headerTooLong() {
        expectError(safetensorsImage(header: good, declaredLength: 1000), mentioning: "header length 1000")
        expectError(safetensorsImage(header: good, declaredLength: UInt64.max), mentioning: "header length")
    }

    @Test("Malformed JSON")
    func malformedJSON() {
        expectError(safetensorsImage(header: #"{"a":{"dtype":"F32","#), mentioning: "not valid JSON")
        expectError(safetensorsImage(header: #"{"a":1,}"#), mentioning: "not valid JSON")
        expectError(safetensorsImage(header: "{\"a\u{00}\":{}}"), mentioning: "not valid JSON")
        expectError(safetensorsImage(header: String(repeating: "[", count: 10_000)), mentioning: "not valid JSON", "nesting")
        expectError(safetensorsImage(header: "[]"), mentioning: "not a JSON object")
    }

    @Test("Entries that are not objects")
    func nonObjectEntries() {
        expectError(safetensorsImage(header: #"{"a":[1,2]}"#), mentioning: "'a'", "not an object")
        expectError(safetensorsImage(header: #"{"__metadata__":{"k":3}}"#), mentioning: "__metadata__", "not a string")
        expectError(safetensorsImage(header: #"{"__metadata__":"x"}"#), mentioning: "__metadata__", "not an object")
    }

    @Test("An unknown dtype")
    func unknownDType() {
        expectError(safetensorsImage(header: #"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)),
                    mentioning: "'a'", "unknown dtype 'F33'")
    }

    @Test("Shapes with negative or non-integer dimensions")
    func badShapes() {
        for shape in ["[-2]", "[2.0]", "[\"2\"]", "[1e1]", "2", "[null]", "[99999999999999999999]"] {
            expectError(safetensorsImage(header: #"{"a":{"dtype":"F32","shape":\#(shape),"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)),
                        mentioning: "'a'", "shape")
        }
        expectError(safetensorsImage(header: #"{"a":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
                                     data: Array(repeating: 0, count: 8)), mentioning: "'a'", "overflows")
    }

    @Test("data_offsets that are not two integers")
    func badOffsets() {
        for offsets in ["[0]", "[0,8,8]", "[0,8.0]", "\"0,8\"", "[0,null]"] {
            expectError(safetensorsImage(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":\#(offsets)}}"#, data: Array(repeating: 0, count: 8)),
                        mentioning: "'a'", "data_offsets")
        }
        expectError(safetensorsImage(header: #"{"a":{"dtype":"F32","shape":[2]}}"#), mentioning: "'a'", "no 'data_offsets'")
    }

    @Test("Offsets outside the data region")
    func offsetsOutOfRange() {
        expectError(safetensorsImage(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: Array(repeating: 0, count: 8)),
                    mentioning: "'a'", "beyond the 8-byte data region")
        expectError(safetensorsImage(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}"#, data: Array(repeating: 0, count: 8)),
                    mentioning: "'a'", "negative")
    }

    @Test("begin greater than end")
    func beginAfterEnd() {
        expectError(safetensorsImage(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: Array(repeating: 0, count: 8)),
                    mentioning: "'a'", "begin > end")
    }

    @Test("Overlapping regions")
    func overlapping() {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        expectError(safetensorsImage(header: header, data: Array(repeating: 0, count: 12)), mentioning: "'a'", "'b'", "overlap")
    }

    @Test("A byte size that does not match shape times dtype size")
    func sizeMismatch() {
        expectError(safetensorsImage(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)),
                    mentioning: "'a'", "holds 8 bytes", "needs 12")
    }

    @Test("Duplicate names")
    func duplicates() {
        let header = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#
        expectError(safetensorsImage(header: header, data: [0, 0]), mentioning: "duplicate", "'a'")
    }

    @Test("Zero-size tensors may share an offset and a header may be space-padded")
    func emptyTensorsAndPadding() throws {
        let header = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]}}    "#
        let file = try openImage(safetensorsImage(header: header))
        #expect(try file.tensor("b").shape == [0, 4])
    }
}
