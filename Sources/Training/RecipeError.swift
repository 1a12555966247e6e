/// A recipe that cannot be run, named by file, line and field, before any work starts.
public struct RecipeError: Error, CustomStringConvertible, Equatable {
    /// The recipe file.
    public var file: String
    /// 1-based line of the offending node, when known.
    public var line: Int?
    /// The dotted field (`stages[1].learning_rate`), when the error is about one.
    public var field: String?
    public var reason: String

    public init(file: String, line: Int? = nil, field: String? = nil, reason: String) {
        self.file = file
        self.line = line
        self.field = field
        self.reason = reason
    }

    public var description: String {
        var place = file
        if let line { place += ":\(line)" }
        return "\(place): " + (field.map { "\($0): " } ?? "") + reason
    }
}
