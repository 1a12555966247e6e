import Foundation

/// Splits a dataset file into the JSON texts of its records, each with the line it starts on, so
/// that one bad record is skipped and named while the others still parse.
enum JSONChunks {
    struct Chunk {
        var bytes: Data
        var location: RecordLocation
    }

    /// JSONL: one record per non-blank line.
    static func lines(_ data: Data, file: String) -> [Chunk] {
        var chunks: [Chunk] = []
        var lineNumber = 0
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let bytes = raw.bindMemory(to: UInt8.self)
            var start = 0
            while start <= bytes.count {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                lineNumber += 1
                let line = UnsafeBufferPointer(rebasing: bytes[start ..< end])
                if line.contains(where: { !isSpace($0) }) {
                    chunks.append(Chunk(bytes: Data(buffer: line), location: RecordLocation(file: file, line: lineNumber)))
                }
                start = end + 1
            }
        }
        return chunks
    }

    /// A JSON file holding one array: its elements, each with the line it starts on. Only the
    /// structure is scanned here (strings, escapes, nesting); each element is parsed later on its own.
    ///
    /// - Throws: ``DataError`` when the file is not one array, or ends inside it.
    static func arrayElements(_ data: Data, file: String) throws -> [Chunk] {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws -> [Chunk] in
            let bytes = raw.bindMemory(to: UInt8.self)
            var index = 0, line = 1
            while index < bytes.count, isSpace(bytes[index]) {
                if bytes[index] == UInt8(ascii: "\n") { line += 1 }
                index += 1
            }
            if bytes.count - index >= 3, bytes[index] == 0xEF, bytes[index + 1] == 0xBB, bytes[index + 2] == 0xBF { index += 3 }
            guard index < bytes.count, bytes[index] == UInt8(ascii: "[") else {
                throw DataError("\(file):\(line): expected a JSON list of records (LLaVA format) starting with [")
            }
            index += 1
            var chunks: [Chunk] = []
            var depth = 0, inString = false, escaped = false
            var elementStart: Int?, elementLine = line
            func finishElement(at end: Int) {
                guard let start = elementStart else { return }
                chunks.append(Chunk(bytes: Data(buffer: UnsafeBufferPointer(rebasing: bytes[start ..< end])),
                                    location: RecordLocation(file: file, line: elementLine)))
                elementStart = nil
            }
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\n") { line += 1 }
                if inString {
                    if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                } else if depth == 0 && (byte == UInt8(ascii: ",") || byte == UInt8(ascii: "]")) {
                    finishElement(at: index)
                    if byte == UInt8(ascii: "]") { return chunks }
                } else if !isSpace(byte) {
                    if elementStart == nil { elementStart = index; elementLine = line }
                    switch byte {
                    case UInt8(ascii: "\""): inString = true
                    case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
                    default: break
                    }
                }
                index += 1
            }
            throw DataError("\(file):\(line): the JSON list is not closed (the file ends inside it)")
        }
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }
}
