import Media

/// Draws a scene: the background gradient, then each object filled with its exact colour, edges
/// anti-aliased by 4×4 supersampling (coverage = share of the 16 sample points inside the shape).
public enum SceneRenderer {
    static let samplesPerSide = 4

    /// The scene as an RGB image.
    public static func render(_ scene: Scene) -> Image {
        let side = scene.imageSize
        var pixels = [UInt8](repeating: 0, count: side * side * 3)
        for y in 0..<side {
            let t = side > 1 ? Double(y) / Double(side - 1) : 0
            for c in 0..<3 {
                let value = (Double(scene.backgroundTop[c]) * (1 - t) + Double(scene.backgroundBottom[c]) * t).rounded()
                for x in 0..<side { pixels[(y * side + x) * 3 + c] = UInt8(value) }
            }
        }
        let n = samplesPerSide, total = Double(n * n)
        for object in scene.objects {
            let color = object.color.rgb.map(Double.init)
            for y in object.box.y0..<object.box.y1 {
                for x in object.box.x0..<object.box.x1 {
                    var inside = 0
                    for sy in 0..<n {
                        let py = Double(y) + (Double(sy) + 0.5) / Double(n) - object.centerY
                        for sx in 0..<n {
                            let px = Double(x) + (Double(sx) + 0.5) / Double(n) - object.centerX
                            if contains(object.shape, extent: object.extent, x: px, y: py) { inside += 1 }
                        }
                    }
                    guard inside > 0 else { continue }
                    let coverage = Double(inside) / total
                    let offset = (y * side + x) * 3
                    for c in 0..<3 {
                        let under = Double(pixels[offset + c])
                        pixels[offset + c] = UInt8((under + (color[c] - under) * coverage).rounded())
                    }
                }
            }
        }
        return Image(width: side, height: side, layout: .rgb, pixels: pixels)
    }

    /// Whether the point (x, y), relative to the centre (y grows downwards), is inside the shape.
    static func contains(_ shape: ShapeKind, extent e: Double, x: Double, y: Double) -> Bool {
        switch shape {
        case .circle:
            return x * x + y * y <= e * e
        case .square:
            return abs(x) <= e && abs(y) <= e
        case .diamond:
            return abs(x) + abs(y) <= e
        case .cross:
            let arm = e / 3
            return (abs(x) <= arm && abs(y) <= e) || (abs(y) <= arm && abs(x) <= e)
        case .triangle:
            // Apex at (0, −e), base from (−e, e) to (e, e).
            guard y <= e, y >= -e else { return false }
            return abs(x) <= (y + e) / 2
        }
    }
}
