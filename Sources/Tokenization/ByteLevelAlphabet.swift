/// GPT-2's byte-level alphabet: the reversible map between the 256 byte values and printable Unicode
/// scalars that Hugging Face `tokenizer.json` files use to spell byte-level BPE tokens.
///
/// Printable Latin-1 bytes (`!`…`~`, `¡`…`¬`, `®`…`ÿ`) stand for themselves; the other 68 bytes, in
/// increasing order, take the scalars U+0100, U+0101, … (so a space is `Ġ`, U+0120, and a newline `Ċ`).
enum ByteLevelAlphabet {
    /// `scalarValue[b]` is the scalar that spells byte `b`.
    static let scalarValues: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            let printable = (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte)
            if printable {
                table[byte] = UInt32(byte)
            } else {
                table[byte] = next
                next += 1
            }
        }
        return table
    }()

    /// The inverse of `scalarValues`, indexed by scalar value (all of them are below 324).
    private static let bytesByScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for (byte, scalar) in scalarValues.enumerated() { table[Int(scalar)] = Int16(byte) }
        return table
    }()

    /// The byte-level spelling of `bytes` (the form `tokenizer.json` vocabularies use).
    static func spelling<Bytes: Sequence>(of bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var text = String.UnicodeScalarView()
        for byte in bytes { text.append(Unicode.Scalar(scalarValues[Int(byte)])!) }
        return String(text)
    }

    /// The 256 bytes in the order of their spellings' scalar values: the order in which a trained
    /// vocabulary numbers its single-byte tokens (`!` is 0, as in Llama 3's).
    static let bytesInSpellingOrder: [UInt8] = (0..<256).map(UInt8.init).sorted { scalarValues[Int($0)] < scalarValues[Int($1)] }

    /// The bytes a byte-level token spells, or nil when it contains a scalar outside the alphabet.
    static func bytes(spelledBy token: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            let value = Int(scalar.value)
            guard value < bytesByScalar.count, bytesByScalar[value] >= 0 else { return nil }
            bytes.append(UInt8(bytesByScalar[value]))
        }
        return bytes
    }
}
