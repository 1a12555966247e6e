import Foundation

/// A JSON object read from a dataset file, with accessors whose errors name the record's location
/// and the field.
struct JSONFields {
    let object: [String: Any]
    let location: RecordLocation

    /// Parses one JSON value that must be an object.
    init(parsing bytes: Data, at location: RecordLocation) throws(DataIssue) {
        let value: Any
        do {
            value = try JSONSerialization.jsonObject(with: bytes, options: [.fragmentsAllowed])
        } catch {
            throw DataIssue(.malformedRecord, at: location, "not valid JSON (\(Self.reason(error)))")
        }
        try self.init(value, at: location)
    }

    init(_ value: Any, at location: RecordLocation, field: String? = nil) throws(DataIssue) {
        guard let object = value as? [String: Any] else {
            throw DataIssue(.malformedRecord, at: location, field: field, "expected a JSON object, found \(Self.kind(of: value))")
        }
        self.object = object
        self.location = location
    }

    var keys: Set<String> { Set(object.keys) }

    func has(_ key: String) -> Bool { object[key] != nil && !(object[key] is NSNull) }

    /// A string field that must be present; `allowEmpty: false` makes blank text an ``SkipCause/emptyText`` skip.
    func string(_ key: String, allowEmpty: Bool = false) throws(DataIssue) -> String {
        guard let value = object[key], !(value is NSNull) else { throw missing(key) }
        guard let text = value as? String else { throw wrongType(key, expected: "a string", found: value) }
        if !allowEmpty && text.allSatisfy(\.isWhitespace) { throw DataIssue(.emptyText, at: location, field: key, "empty text") }
        return text
    }

    /// A string field that may be absent or null.
    func optionalString(_ key: String) throws(DataIssue) -> String? {
        guard has(key) else { return nil }
        return try string(key, allowEmpty: true)
    }

    /// The record's `"id"` (a string or a number), or nil.
    var id: String? {
        switch object["id"] {
        case let text as String: text
        case let number as NSNumber: number.stringValue
        default: nil
        }
    }

    /// A field holding one string or a list of strings (`"image": "a.png"` or `"images": ["a.png", "b.png"]`).
    func strings(_ key: String) throws(DataIssue) -> [String] {
        guard let value = object[key], !(value is NSNull) else { return [] }
        if let text = value as? String { return [text] }
        guard let list = value as? [Any] else { throw wrongType(key, expected: "a string or a list of strings", found: value) }
        var result: [String] = []
        for (index, element) in list.enumerated() {
            guard let text = element as? String else {
                throw wrongType("\(key)[\(index)]", expected: "a string", found: element)
            }
            result.append(text)
        }
        return result
    }

    /// A list field that must be present.
    func list(_ key: String) throws(DataIssue) -> [Any] {
        guard let value = object[key], !(value is NSNull) else { throw missing(key) }
        guard let list = value as? [Any] else { throw wrongType(key, expected: "a list", found: value) }
        return list
    }

    func missing(_ key: String) -> DataIssue {
        DataIssue(.malformedRecord, at: location, field: key, "missing")
    }

    func wrongType(_ key: String, expected: String, found value: Any) -> DataIssue {
        DataIssue(.malformedRecord, at: location, field: key, "expected \(expected), found \(Self.kind(of: value))")
    }

    static func kind(of value: Any) -> String {
        switch value {
        case is String: "a string"
        case is [Any]: "a list"
        case is [String: Any]: "an object"
        case is NSNull: "null"
        case is NSNumber: "a number"
        default: "\(type(of: value))"
        }
    }

    static func reason(_ error: Error) -> String {
        let nsError = error as NSError
        return (nsError.userInfo[NSDebugDescriptionErrorKey] as? String) ?? nsError.localizedDescription
    }
}
