import Foundation

/// A configuration file that did not decode, naming the file and the field.
///
/// `description` reads like `tiny/config.json: rope_scaling must contain 'factor'` or
/// `config.json: missing required field 'text_config.hidden_size'`.
public struct ConfigError: Error, CustomStringConvertible {
    public let file: String
    /// The dotted path of the field (`text_config.rope_scaling`), empty for the whole file.
    public let field: String
    public let reason: String
    public var description: String { "\(file): \(reason)" }
}

/// A Hugging Face JSON configuration that VLMKit decodes directly from the checkpoint folder.
public protocol HuggingFaceConfiguration: Codable, Sendable {
    /// The file name transformers saves it under (`config.json`, `preprocessor_config.json`, …).
    static var fileName: String { get }
}

extension HuggingFaceConfiguration {
    /// Decodes the configuration from `url`: the JSON file itself or a folder holding ``fileName``.
    ///
    /// - Throws: ``ConfigError`` naming the file and field when the file is missing or a field is
    ///   missing, mistyped or invalid.
    public static func load(from url: URL) throws -> Self {
        var isFolder: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder) && isFolder.boolValue
            ? url.appendingPathComponent(fileName) : url
        let data: Data
        do { data = try Data(contentsOf: file) } catch {
            throw ConfigError(file: file.path, field: "", reason: "cannot read (\(error.localizedDescription))")
        }
        return try decode(data, file: file.path)
    }

    /// Decodes the configuration from JSON `data`; `file` names it in errors.
    public static func decode(_ data: Data, file: String) throws -> Self {
        do {
            return try JSONDecoder().decode(Self.self, from: data)
        } catch let error as DecodingError {
            throw ConfigError(decoding: error, file: file)
        }
    }

    /// The configuration as pretty JSON with sorted keys, in transformers' spelling.
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}

extension ConfigError {
    init(decoding error: DecodingError, file: String) {
        func dotted(_ path: [CodingKey]) -> String {
            path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
                .replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = dotted(context.codingPath + [key])
            self.init(file: file, field: field, reason: "missing required field '\(field)'")
        case .typeMismatch(let type, let context):
            let field = dotted(context.codingPath)
            self.init(file: file, field: field, reason: "field '\(field)' is not \(Self.describe(type))")
        case .valueNotFound(let type, let context):
            let field = dotted(context.codingPath)
            self.init(file: file, field: field, reason: "field '\(field)' is null, expected \(Self.describe(type))")
        case .dataCorrupted(let context):
            let field = dotted(context.codingPath)
            if context.codingPath.isEmpty, context.underlyingError != nil || context.debugDescription.contains("JSON") {
                self.init(file: file, field: "", reason: "not valid JSON")
            } else {
                self.init(file: file, field: field, reason: context.debugDescription)
            }
        @unknown default:
            self.init(file: file, field: "", reason: "\(error)")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: "an integer"
        case is Double.Type, is Float.Type: "a number"
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        default: "of type \(type)"
        }
    }
}

/// A coding key made from any string, for fields read conditionally.
struct _AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension KeyedDecodingContainer {
    /// Token ids written either as one integer, a list, or null (`eos_token_id: [128001, 128008, 128009]`).
    func decodeTokenIDs(forKey key: Key) throws -> [Int]? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let single = try? decode(Int.self, forKey: key) { return [single] }
        do { return try decode([Int].self, forKey: key) } catch {
            throw DecodingError.dataCorruptedError(forKey: key, in: self,
                debugDescription: "\(key.stringValue) must be an integer or a list of integers")
        }
    }
}

extension KeyedEncodingContainer {
    /// Writes token ids as transformers does: one integer when there is one, a list otherwise.
    mutating func encodeTokenIDs(_ ids: [Int]?, forKey key: Key) throws {
        guard let ids else { return }
        if ids.count == 1 { try encode(ids[0], forKey: key) } else { try encode(ids, forKey: key) }
    }
}
