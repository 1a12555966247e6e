/// How well a free-form caption agrees with a scene's record: the metric for captioning stages.
///
/// The caption is scanned for object mentions — a shape word ("circle", "circles") with the size
/// and colour words just before it and an optional "in the ROW COLUMN" after it. Each mention is
/// matched to the scene's object of that shape that agrees with most of its stated attributes; a
/// shape the scene lacks makes every stated attribute of that mention wrong.
///
/// ```swift
/// let score = CaptionScore(caption: "a large red circle in the top left", scene: scene)
/// score.accuracy   // correct stated attributes / stated attributes
/// score.recall     // objects mentioned / objects in the scene
/// ```
public struct CaptionScore: Equatable, Sendable {
    /// Attributes the caption states (shape, size, colour and position words of its mentions).
    public var stated: Int
    /// Stated attributes that are true of the object the mention is matched to.
    public var correct: Int
    /// Distinct objects of the scene some mention was matched to.
    public var objectsMentioned: Int
    /// Objects in the scene.
    public var objectCount: Int

    /// `correct / stated`, or 0 when the caption states nothing.
    public var accuracy: Double { stated == 0 ? 0 : Double(correct) / Double(stated) }
    /// `objectsMentioned / objectCount`.
    public var recall: Double { objectCount == 0 ? 0 : Double(objectsMentioned) / Double(objectCount) }

    public init(caption: String, scene: Scene) {
        let words = GroundedNegative.words(in: caption).map(\.text)
        var stated = 0, correct = 0
        var matched = Set<Int>()
        for (k, word) in words.enumerated() {
            guard let shape = ShapeKind.allCases.first(where: { $0.rawValue == word || $0.plural == word }) else { continue }
            var color: ObjectColor? = nil, size: ObjectSize? = nil
            var j = k - 1
            while j >= 0 && j >= k - 2 {
                if color == nil, let c = ObjectColor(rawValue: words[j]) { color = c } else if size == nil, let s = ObjectSize(rawValue: words[j]) { size = s } else { break }
                j -= 1
            }
            var position: GridPosition? = nil
            if k + 4 < words.count, words[k + 1] == "in", words[k + 2] == "the",
               let row = GridRow.allCases.first(where: { $0.word == words[k + 3] }),
               let column = GridColumn.allCases.first(where: { $0.word == words[k + 4] }) {
                position = GridPosition(row: row, column: column)
            }
            let count = 1 + (color == nil ? 0 : 1) + (size == nil ? 0 : 1) + (position == nil ? 0 : 1)
            stated += count
            func agreement(_ object: SceneObject) -> Int {
                (color == object.color ? 1 : 0) + (size == object.size ? 1 : 0) + (position == object.position ? 1 : 0)
            }
            let candidates = scene.objects.indices.filter { scene.objects[$0].shape == shape }
            guard let best = candidates.max(by: { agreement(scene.objects[$0]) < agreement(scene.objects[$1]) || (agreement(scene.objects[$0]) == agreement(scene.objects[$1]) && $0 > $1) }) else { continue }
            correct += 1 + agreement(scene.objects[best])
            matched.insert(best)
        }
        self.stated = stated
        self.correct = correct
        objectsMentioned = matched.count
        objectCount = scene.objects.count
    }
}
