/// A strict JSON reader for safetensors headers and index files.
///
/// Foundation's `JSONSerialization` forgets key order and silently keeps the last of two equal
/// keys; a safetensors header needs both (file order, and duplicate names are an error), so this
/// small parser keeps object members as an ordered list. Nesting is capped so that a hostile
/// header cannot exhaust the stack.
enum _JSONValue: Equatable {
    case object([(key: String, value: _JSONValue)])
    case array([_JSONValue])
    case string(String)
    /// A number kept as written, so integers wider than 53 bits stay exact.
    case number(String)
    case bool(Bool)
    case null

    static func == (lhs: _JSONValue, rhs: _JSONValue) -> Bool {
        switch (lhs, rhs) {
        case let (.object(a), .object(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(a), .array(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.bool(a), .bool(b)): return a == b
        case (.null, .null): return true
        default: return false
        }
    }

    /// The value as an exact integer, when it is a number written without fraction or exponent.
    var integer: Int? {
        guard case .number(let text) = self else { return nil }
        return Int(text)
    }

    var string: String? {
        guard case .string(let s) = self else { return nil }
        return s
    }

    /// A short name of the value's kind for error messages.
    var kind: String {
        switch self {
        case .object: "an object"
        case .array: "an array"
        case .string: "a string"
        case .number: "a number"
        case .bool: "a boolean"
        case .null: "null"
        }
    }
}

/// Why a JSON text did not parse, with the byte offset.
struct _JSONSyntaxError: Error, CustomStringConvertible {
    let offset: Int
    let message: String
    var description: String { "malformed JSON at byte \(offset): \(message)" }
}

struct _JSONParser {
    private let bytes: UnsafeRawBufferPointer
    private var position = 0
    private let maximumDepth = 64

    /// Parses one JSON value filling `bytes` (surrounding whitespace allowed).
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> _JSONValue {
        var parser = _JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.error("unexpected content after the JSON value") }
        return value
    }

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private func error(_ message: String) -> _JSONSyntaxError { _JSONSyntaxError(offset: position, message: message) }

    private var current: UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func skipWhitespace() {
        while let c = current, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { position += 1 }
    }

    private mutating func expect(_ literal: String, _ value: _JSONValue) throws -> _JSONValue {
        for byte in literal.utf8 {
            guard current == byte else { throw error("invalid literal (expected '\(literal)')") }
            position += 1
        }
        return value
    }

    private mutating func parseValue(depth: Int) throws -> _JSONValue {
        guard depth < maximumDepth else { throw error("nesting deeper than \(maximumDepth) levels") }
        guard let c = current else { throw error("unexpected end of text") }
        switch c {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character '\(Character(Unicode.Scalar(c)))'")
        }
    }

    private mutating func parseObject(depth: Int) throws -> _JSONValue {
        position += 1
        var members: [(key: String, value: _JSONValue)] = []
        skipWhitespace()
        if current == UInt8(ascii: "}") { position += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw error("expected ':' after key \"\(key)\"") }
            position += 1
            skipWhitespace()
            members.append((key, try parseValue(depth: depth + 1)))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): position += 1; return .object(members)
            default: throw error("expected ',' or '}' in object")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws -> _JSONValue {
        position += 1
        var elements: [_JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") { position += 1; return .array(elements) }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"): position += 1; return .array(elements)
            default: throw error("expected ',' or ']' in array")
            }
        }
    }

    private mutating func parseNumber() throws -> _JSONValue {
        let start = position
        if current == UInt8(ascii: "-") { position += 1 }
        func digits(_ p: inout _JSONParser) -> Int {
            let s = p.position
            while let c = p.current, c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { p.position += 1 }
            return p.position - s
        }
        let intStart = position
        guard digits(&self) > 0 else { throw error("expected digits") }
        if bytes[intStart] == UInt8(ascii: "0") && position - intStart > 1 { throw error("leading zero in number") }
        if current == UInt8(ascii: ".") {
            position += 1
            guard digits(&self) > 0 else { throw error("expected digits after '.'") }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            position += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            guard digits(&self) > 0 else { throw error("expected exponent digits") }
        }
        return .number(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self))
    }

    private mutating func parseString() throws -> String {
        position += 1
        var scalars = String.UnicodeScalarView()
        var runStart = position
        func flush(_ p: _JSONParser, upTo end: Int) throws {
            guard end > runStart else { return }
            let run = UnsafeRawBufferPointer(rebasing: p.bytes[runStart..<end])
            guard let text = String(validating: run, as: UTF8.self) else { throw p.error("string is not valid UTF-8") }
            scalars.append(contentsOf: text.unicodeScalars)
        }
        while true {
            guard let c = current else { throw error("unterminated string") }
            if c == UInt8(ascii: "\"") {
                try flush(self, upTo: position)
                position += 1
                return String(scalars)
            }
            if c < 0x20 { throw error("control character in string") }
            if c == UInt8(ascii: "\\") {
                try flush(self, upTo: position)
                position += 1
                guard let e = current else { throw error("unterminated escape") }
                position += 1
                switch e {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard current == UInt8(ascii: "\\"), position + 1 < bytes.count, bytes[position + 1] == UInt8(ascii: "u")
                        else { throw error("unpaired surrogate") }
                        position += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw error("invalid \\u escape") }
                    scalars.append(scalar)
                default: throw error("invalid escape")
                }
                runStart = position
                continue
            }
            position += 1
        }
    }

    private mutating func hex4() throws -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let c = current, let digit = Character(Unicode.Scalar(c)).hexDigitValue else { throw error("invalid \\u escape") }
            value = value * 16 + UInt32(digit)
            position += 1
        }
        return value
    }
}

/// Writes JSON strings the way serde_json (the Rust core of Python's `safetensors`) does: only
/// `"`, `\` and control characters are escaped, so headers written here match Python's byte for byte.
enum _JSONWriter {
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
