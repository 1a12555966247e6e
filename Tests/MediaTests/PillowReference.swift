import Foundation
import _TestSupport
@testable import Media

/// One entry of Tests/Fixtures/media/manifest.json, written by
/// Scripts/fixtures/make_media_fixtures.py: a test image and the pixels Pillow decodes from it.
struct PillowReference: Sendable, CustomStringConvertible {
    let name: String
    let file: String
    let width: Int
    let height: Int
    let channels: Int
    /// Raw samples file, for fixtures; nil for shared photos, which carry `crc32` instead.
    let pixelsFile: String?
    let crc32: UInt32?

    var description: String { name }

    static let all: [PillowReference] = {
        let url = Fixtures.url("media/manifest.json")
        guard let data = try? Data(contentsOf: url),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: [String: Any]]
        else { return [] }
        return root.keys.sorted().map { name in
            let entry = root[name]!
            return PillowReference(
                name: name, file: entry["file"] as! String, width: entry["width"] as! Int,
                height: entry["height"] as! Int, channels: entry["channels"] as! Int,
                pixelsFile: entry["pixels"] as? String, crc32: (entry["crc32"] as? Int).map { UInt32($0) })
        }
    }()

    static func named(_ prefix: String) -> [PillowReference] { all.filter { $0.name.hasPrefix(prefix) } }

    static func entry(_ name: String) -> PillowReference { all.first { $0.name == name }! }

    /// The test image: a fixture, or a shared reference photo.
    var fileURL: URL {
        name.hasPrefix("shared/") ? Fixtures.sharedReference("images/\(file)") : Fixtures.url("media/\(file)")
    }

    /// Pillow's decoded samples.
    func pillowPixels() throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Fixtures.url("media/\(pixelsFile!)")))
    }

    var layout: Image.ChannelLayout { channels == 4 ? .rgba : .rgb }
}

/// The largest absolute difference between two equally long sample arrays.
func maximumAbsoluteDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
    precondition(a.count == b.count)
    var worst = 0
    for index in a.indices { worst = max(worst, abs(Int(a[index]) - Int(b[index]))) }
    return worst
}

/// The first differing sample, as "pixel (x, y) channel c: ours vs Pillow's", for failure messages.
func firstDifference(_ ours: [UInt8], _ pillow: [UInt8], width: Int, channels: Int) -> String {
    guard let index = ours.indices.first(where: { ours[$0] != pillow[$0] }) else { return "none" }
    let pixel = index / channels
    return "pixel (\(pixel % width), \(pixel / width)) channel \(index % channels): \(ours[index]) vs Pillow \(pillow[index])"
}
