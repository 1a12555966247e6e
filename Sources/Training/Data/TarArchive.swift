import Foundation

/// A regular file inside a tar archive: its path and where its bytes lie in the archive.
struct TarMember: Sendable, Hashable {
    var name: String
    /// Byte offset of the member's data in the archive.
    var offset: UInt64
    var size: Int
}

/// Reads the table of contents of a POSIX ustar archive (what `tar`, Python's `tarfile` and
/// webdataset's writers produce), including pax `path` records and GNU long names. Only headers are
/// read; member bytes are read on demand with ``read(_:)``.
struct TarArchive: Sendable {
    let url: URL
    /// The archive's name in messages (as the user wrote it).
    let name: String
    let members: [TarMember]
    /// Why the scan stopped early (a corrupt header or a truncated member), with the members before it kept.
    let issue: DataIssue?

    static let blockSize = 512

    init(url: URL, name: String) throws {
        self.url = url
        self.name = name
        let handle: FileHandle
        do { handle = try FileHandle(forReadingFrom: url) } catch {
            throw DataError("\(name): cannot open the tar shard (\(error.localizedDescription))")
        }
        defer { try? handle.close() }
        let fileSize = (try? handle.seekToEnd()) ?? 0
        var members: [TarMember] = []
        var issue: DataIssue?
        var offset: UInt64 = 0
        var pendingName: String?
        func fail(_ place: String, _ message: String) { issue = DataIssue(.malformedRecord, at: RecordLocation(file: name, place: place), message) }

        while offset + UInt64(Self.blockSize) <= fileSize {
            try? handle.seek(toOffset: offset)
            guard let block = try? handle.read(upToCount: Self.blockSize), block.count == Self.blockSize else {
                fail("byte \(offset)", "cannot read the tar header"); break
            }
            let header = [UInt8](block)
            if header.allSatisfy({ $0 == 0 }) { break }   // end of archive
            guard Self.checksumMatches(header) else {
                fail("byte \(offset)", "bad tar header checksum (the shard is corrupt or not a tar file)"); break
            }
            guard let size = Self.number(header[124 ..< 136]) else {
                fail("byte \(offset)", "bad size field in a tar header"); break
            }
            let ustarName = Self.text(header[0 ..< 100])
            let prefix = header[257 ..< 262].elementsEqual("ustar".utf8) ? Self.text(header[345 ..< 500]) : ""
            let memberName = pendingName ?? (prefix.isEmpty ? ustarName : prefix + "/" + ustarName)
            let dataOffset = offset + UInt64(Self.blockSize)
            guard dataOffset + UInt64(size) <= fileSize else {
                fail(memberName, "truncated: the member needs \(size) bytes, the shard ends first"); break
            }
            let type = header[156]
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "L"):
                try? handle.seek(toOffset: dataOffset)
                let data = [UInt8]((try? handle.read(upToCount: size)) ?? Data())
                pendingName = type == UInt8(ascii: "L") ? Self.text(data[...]) : Self.paxPath(data) ?? pendingName
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
                members.append(TarMember(name: memberName, offset: dataOffset, size: size))
                pendingName = nil
            default:   // directories, links, global pax headers: nothing to read
                pendingName = nil
            }
            offset = dataOffset + (UInt64(size) + 511) / 512 * 512
        }
        self.members = members
        self.issue = issue
    }

    /// A member's bytes.
    func read(_ member: TarMember) throws -> [UInt8] {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        try handle.seek(toOffset: member.offset)
        let data = try handle.read(upToCount: member.size) ?? Data()
        guard data.count == member.size else {
            throw DataError("\(name):\(member.name): truncated (\(data.count) of \(member.size) bytes)")
        }
        return [UInt8](data)
    }

    // MARK: - Header fields

    /// A NUL-terminated string field.
    static func text(_ field: ArraySlice<UInt8>) -> String {
        String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// An octal numeric field, or GNU's base-256 form (high bit of the first byte set) for large sizes.
    static func number(_ field: ArraySlice<UInt8>) -> Int? {
        if let first = field.first, first & 0x80 != 0 {
            var value = Int(first & 0x7F)
            for byte in field.dropFirst() {
                guard value < Int.max >> 8 else { return nil }
                value = value << 8 | Int(byte)
            }
            return value
        }
        let digits = field.drop { $0 == UInt8(ascii: " ") }.prefix { $0 != 0 && $0 != UInt8(ascii: " ") }
        var value = 0
        for digit in digits {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "7"), value < Int.max >> 3 else { return nil }
            value = value << 3 | Int(digit - UInt8(ascii: "0"))
        }
        return value
    }

    /// The header's bytes summed with the checksum field read as spaces; tar writers store the
    /// unsigned sum (old ones the signed sum, accepted too).
    static func checksumMatches(_ header: [UInt8]) -> Bool {
        guard let stored = number(header[148 ..< 156]) else { return false }
        var unsigned = 0, signed = 0
        for (index, byte) in header.enumerated() {
            let value = (148 ..< 156).contains(index) ? UInt8(ascii: " ") : byte
            unsigned += Int(value)
            signed += Int(Int8(bitPattern: value))
        }
        return stored == unsigned || stored == signed
    }

    /// The `path` of a pax extended header (records `"LEN key=value\n"`).
    static func paxPath(_ data: [UInt8]) -> String? {
        var index = 0
        while index < data.count {
            guard let space = data[index...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: data[index ..< space], as: UTF8.self)), length > 0,
                  index + length <= data.count else { return nil }
            let record = data[(space + 1) ..< (index + length)]
            if let equals = record.firstIndex(of: UInt8(ascii: "=")),
               String(decoding: record[record.startIndex ..< equals], as: UTF8.self) == "path" {
                var value = record[(equals + 1)...]
                if value.last == UInt8(ascii: "\n") { value = value.dropLast() }
                return String(decoding: value, as: UTF8.self)
            }
            index += length
        }
        return nil
    }
}
