import ArgumentParser
import Foundation

/// The items of a comma-separated option value, each trimmed of surrounding spaces ("a, b" → ["a", "b"]).
func commaSeparated(_ text: String) -> [String] {
    text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
}

/// The items of a comma-separated option value as cases of `T`; an unknown one is named with the
/// choices: "--archs: 'x' is not a design; one of cross-attention, llava-linear, llava-mlp2x".
func commaSeparated<T: RawRepresentable & CaseIterable>(_ text: String, option: String, noun: String) throws -> [T]
    where T.RawValue == String {
    try commaSeparated(text).map { name in
        guard let value = T(rawValue: name) else {
            throw ValidationError("\(option): '\(name)' is not \(noun); one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return value
    }
}
