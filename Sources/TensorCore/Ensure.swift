/// Stops the program with `message` when `condition` is false, in every build configuration.
///
/// Used instead of `precondition` for misuse checks (mismatched shapes, freed graphs): optimised
/// builds keep `precondition`'s check but drop its message, and a shape error without the shapes
/// is no help.
@inlinable @inline(__always)
public func ensure(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                   file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}
