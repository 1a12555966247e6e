import Foundation
import Tokenization

/// Where an image of a record comes from: a file on disk, or bytes held inside a container such as
/// a webdataset tar shard.
public enum ImageSource: Sendable, Hashable {
    /// An image file (paths in dataset files are resolved against the dataset file's directory).
    case file(URL)
    /// The bytes of an image stored inside another file; `name` says where, for error messages
    /// (`"shard-00001.tar:000123.jpg"`).
    case embedded(name: String, bytes: [UInt8])

    /// The name errors use for this image: the file's path or the embedded name.
    public var name: String {
        switch self {
        case .file(let url): url.path
        case .embedded(let name, _): name
        }
    }
}

/// Where a record was read from, for warnings and errors: a file and line (`data/train.jsonl:17`),
/// a file and array element (`llava.json:#4`), or a tar shard and member (`shard-00001.tar:000123.jpg`).
public struct RecordLocation: Sendable, Hashable, CustomStringConvertible {
    /// The dataset file (or shard) as the user named it.
    public var file: String
    /// The line (1-based), the JSON array element (`#4`, 0-based) or the tar member.
    public var place: String

    public init(file: String, place: String) {
        self.file = file
        self.place = place
    }

    /// A line of a text file, 1-based.
    public init(file: String, line: Int) { self.init(file: file, place: String(line)) }

    public var description: String { place.isEmpty ? file : "\(file):\(place)" }
}

/// What a record teaches, independent of the file format it came in.
public enum RecordContent: Sendable {
    /// An image–text pair: the text describes the record's one image.
    case caption(String)
    /// A conversation; `.image` parts mark where the record's images go, in order.
    case conversation([ChatMessage])
    /// A question about the image with a reference answer (for training as a one-turn conversation,
    /// and for exact-match evaluation); `kind` is an optional category such as `"color"`.
    case question(prompt: String, answer: String, kind: String?)
    /// A preference pair (TRL's format): a prompt and two (or, with `edited`, three) continuations.
    case preference(prompt: [ChatMessage], chosen: [ChatMessage], rejected: [ChatMessage], edited: [ChatMessage]?)
}

/// One example of a dataset, in any of the formats VLMKit reads.
public struct DatasetRecord: Sendable {
    /// The record's id: the file's `"id"` when it has one, else derived from its location.
    public var id: String
    /// Where it was read from.
    public var location: RecordLocation
    /// The images, in the order the content refers to them.
    public var images: [ImageSource]
    /// What it teaches.
    public var content: RecordContent

    public init(id: String, location: RecordLocation, images: [ImageSource], content: RecordContent) {
        self.id = id
        self.location = location
        self.images = images
        self.content = content
    }
}

extension DatasetRecord {
    /// The record with its images and their places in the text removed.
    public var withoutImages: DatasetRecord {
        var copy = self
        copy.images = []
        func strip(_ messages: [ChatMessage]) -> [ChatMessage] {
            messages.map { ChatMessage(role: $0.role, parts: $0.parts.filter { $0 != .image }) }
        }
        switch content {
        case .conversation(let messages): copy.content = .conversation(strip(messages))
        case .preference(let prompt, let chosen, let rejected, let edited):
            copy.content = .preference(prompt: strip(prompt), chosen: strip(chosen), rejected: strip(rejected), edited: edited.map(strip))
        case .caption, .question: break
        }
        return copy
    }
}
