import Foundation
import Media

/// Reads and decodes a record's image, turning failures into skips: a file that is absent or
/// unreadable is ``SkipCause/missingImage``, bytes that do not decode ``SkipCause/undecodableImage``.
enum ImageLoading {
    static func load(_ source: ImageSource, for location: RecordLocation) throws(DataIssue) -> Image {
        switch source {
        case .file(let url):
            let data: Data
            do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
                let exists = FileManager.default.fileExists(atPath: url.path)
                throw DataIssue(.missingImage, at: location, field: "image",
                                exists ? "cannot read \(url.path)" : "\(url.path) does not exist")
            }
            do { return try decodeImage(data: data, source: url.path) } catch {
                throw DataIssue(.undecodableImage, at: location, field: "image", "\(error)")
            }
        case .embedded(let name, let bytes):
            do { return try bytes.withUnsafeBytes { try decodeImage(bytes: $0, source: name) } } catch {
                throw DataIssue(.undecodableImage, at: location, "\(error)")
            }
        }
    }
}
