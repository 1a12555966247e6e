// A scene's symbolic record — what LLaVA handed GPT-4: the objects, their attributes and boxes —
// and the seeded generator that lays scenes out.

/// A box in pixels: columns `x0..<x1`, rows `y0..<y1`.
public struct BoundingBox: Equatable, Hashable, Sendable {
    public var x0: Int, y0: Int, x1: Int, y1: Int

    public init(x0: Int, y0: Int, x1: Int, y1: Int) {
        self.x0 = x0; self.y0 = y0; self.x1 = x1; self.y1 = y1
    }

    /// True when the two boxes share at least one pixel.
    public func intersects(_ other: BoundingBox) -> Bool {
        x0 < other.x1 && other.x0 < x1 && y0 < other.y1 && other.y0 < y1
    }
}

/// One object of a scene.
public struct SceneObject: Equatable, Sendable {
    public var shape: ShapeKind
    public var color: ObjectColor
    public var size: ObjectSize
    public var position: GridPosition
    /// The centre in pixels; always a pixel centre (k + 0.5), so the pixel there is fully covered.
    public var centerX: Double
    public var centerY: Double
    /// Half the side of the square the shape fills, in pixels.
    public var extent: Double
    /// The pixels the shape can touch.
    public var box: BoundingBox

    /// The pixel holding the centre.
    public var centerPixel: (x: Int, y: Int) { (Int(centerX), Int(centerY)) }

    /// "large red circle".
    public var nounPhrase: String { "\(size.rawValue) \(color.rawValue) \(shape.rawValue)" }
}

/// Which part of the data set a scene belongs to.
public enum WorldSplit: String, Sendable {
    case train
    case heldout
    /// Pictures for image-encoder pretraining only (`regions.jsonl`): no text is written about them.
    case encoder
}

/// A scene: 1–4 objects in distinct cells of a 3×3 grid over a grey background that brightens or
/// darkens slightly from top to bottom.
public struct Scene: Equatable, Sendable {
    /// Position in the data set; also the image's file name (`images/000042.png`).
    public var index: Int
    public var split: WorldSplit
    /// Width and height in pixels.
    public var imageSize: Int
    /// Background colour of the top row and of the bottom row (linear in between).
    public var backgroundTop: [UInt8]
    public var backgroundBottom: [UInt8]
    /// Objects in reading order (row by row, left to right).
    public var objects: [SceneObject]

    /// "000042".
    public var id: String {
        let digits = String(index)
        return String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// The image's path relative to the data set's folder.
    public var imagePath: String { "images/\(id).png" }

    /// What the scene shows, ignoring exact placement and background: two scenes with the same
    /// signature are the same scene to every caption and question.
    public var signature: String {
        objects.map { "\($0.position.phrase) \($0.nounPhrase)" }.joined(separator: ", ")
    }
}

/// Lays out random scenes.
public enum SceneGenerator {
    /// The smallest image side the layout supports.
    public static let minimumImageSize = 24

    /// A random scene drawn from `random`, with `objectCount` objects (1–4) or a uniform count.
    /// `jitter` scales how far an object's centre may wander from its cell's centre (1: as far as the
    /// cell allows with a pixel of margin; 0: always centred). The draws are the same either way.
    public static func scene(index: Int, split: WorldSplit, imageSize: Int, objectCount: Int? = nil, jitter: Double = 1,
                             random: inout WorldRandom) -> Scene {
        let count = objectCount ?? 1 + random.int(below: 4)
        let cells = random.shuffled(GridPosition.all).prefix(count)
            .sorted { ($0.row.rawValue, $0.column.rawValue) < ($1.row.rawValue, $1.column.rawValue) }
        let cell = Double(imageSize) / 3
        var objects: [SceneObject] = []
        for position in cells {
            let shape = random.pick(ShapeKind.allCases)
            let color = random.pick(ObjectColor.allCases)
            let size = random.pick(ObjectSize.allCases)
            var extent = size.radiusShare * cell
            if shape == .square { extent *= 0.85 }
            // Keep a pixel of margin inside the cell, so boxes of neighbouring cells never touch.
            let slack = max(0, cell / 2 - extent - 1) * jitter
            func coordinate(_ index: Int) -> Double {
                let middle = (Double(index) + 0.5) * cell + (random.unit() * 2 - 1) * slack
                return (middle - 0.5).rounded(.down) + 0.5
            }
            let x = coordinate(position.column.rawValue), y = coordinate(position.row.rawValue)
            let box = BoundingBox(x0: max(0, Int((x - extent).rounded(.down))), y0: max(0, Int((y - extent).rounded(.down))),
                                  x1: min(imageSize, Int((x + extent).rounded(.up))),
                                  y1: min(imageSize, Int((y + extent).rounded(.up))))
            objects.append(SceneObject(shape: shape, color: color, size: size, position: position,
                                       centerX: x, centerY: y, extent: extent, box: box))
        }
        let grey = 85 + random.int(below: 40)
        func tinted(_ base: Int) -> [UInt8] { (0..<3).map { _ in UInt8(base + random.int(below: 13) - 6) } }
        let top = tinted(grey)
        let bottom = tinted(grey + random.int(below: 25) - 12)
        return Scene(index: index, split: split, imageSize: imageSize, backgroundTop: top, backgroundBottom: bottom,
                     objects: objects)
    }
}
