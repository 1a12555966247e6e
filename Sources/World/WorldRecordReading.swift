import Foundation

extension WorldDataset {
    /// The scenes recorded in a data set's `world.json` (``recordJSON()``), in file order: what
    /// ``CaptionScore`` needs (objects with shape, colour, size and cell) to score a description of
    /// a scene's image, without generating the world again.
    /// - Parameter split: only the scenes of this split (nil: all).
    /// - Throws: ``WorldError`` naming the file and the scene or field that is wrong.
    public static func recordedScenes(from url: URL, split: WorldSplit? = nil) throws -> [Scene] {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) } catch {
            throw WorldError("\(url.path): cannot read the world record (\(error.localizedDescription))")
        }
        guard let root = object as? [String: Any], let scenes = root["scenes"] as? [[String: Any]] else {
            throw WorldError("\(url.path): not a world record (no 'scenes' list)")
        }
        let imageSize = root["image_size"] as? Int ?? 0
        return try scenes.enumerated().compactMap { offset, record in
            func bad(_ field: String) -> WorldError { WorldError("\(url.path): scenes[\(offset)].\(field) is missing or invalid") }
            guard let id = record["id"] as? String, let index = Int(id) else { throw bad("id") }
            guard let splitName = record["split"] as? String, let sceneSplit = WorldSplit(rawValue: splitName) else { throw bad("split") }
            if let split, sceneSplit != split { return nil }
            guard let objects = record["objects"] as? [[String: Any]] else { throw bad("objects") }
            let background = record["background"] as? [[Int]] ?? [[0, 0, 0], [0, 0, 0]]
            return Scene(index: index, split: sceneSplit, imageSize: imageSize,
                         backgroundTop: background.first.map { $0.map { UInt8(clamping: $0) } } ?? [],
                         backgroundBottom: background.last.map { $0.map { UInt8(clamping: $0) } } ?? [],
                         objects: try objects.enumerated().map { k, o in
                guard let shape = (o["shape"] as? String).flatMap(ShapeKind.init(rawValue:)) else { throw bad("objects[\(k)].shape") }
                guard let color = (o["color"] as? String).flatMap(ObjectColor.init(rawValue:)) else { throw bad("objects[\(k)].color") }
                guard let size = (o["size"] as? String).flatMap(ObjectSize.init(rawValue:)) else { throw bad("objects[\(k)].size") }
                guard let row = (o["row"] as? Int).flatMap(GridRow.init(rawValue:)),
                      let column = (o["column"] as? Int).flatMap(GridColumn.init(rawValue:)) else { throw bad("objects[\(k)].row/column") }
                let center = o["center"] as? [Double] ?? [0, 0], box = o["box"] as? [Int] ?? [0, 0, 0, 0]
                guard center.count == 2, box.count == 4 else { throw bad("objects[\(k)].center/box") }
                return SceneObject(shape: shape, color: color, size: size, position: GridPosition(row: row, column: column),
                                   centerX: center[0], centerY: center[1], extent: 0,
                                   box: BoundingBox(x0: box[0], y0: box[1], x1: box[2], y1: box[3]))
            })
        }
    }

    /// The prompts the world's detailed-description instructions use ("Describe the image in detail.", …).
    public static var descriptionPrompts: [String] { Instructions.detailPrompts }
}
