// The attributes an object of the world has, with the words the text generators use for them.

/// An object's shape.
public enum ShapeKind: String, CaseIterable, Sendable {
    case circle, square, triangle, diamond, cross

    /// "circles", "crosses".
    public var plural: String { self == .cross ? "crosses" : rawValue + "s" }

    /// How many corners the outline has (the "knowledge" of detailed descriptions).
    public var cornerCount: Int {
        switch self {
        case .circle: 0
        case .triangle: 3
        case .square, .diamond: 4
        case .cross: 12
        }
    }
}

/// An object's colour: seven hues far apart, all distinct from the grey backgrounds.
public enum ObjectColor: String, CaseIterable, Sendable {
    case red, orange, yellow, green, blue, purple, white

    /// The exact sample values an object of this colour is filled with.
    public var rgb: [UInt8] {
        switch self {
        case .red: [220, 40, 40]
        case .orange: [245, 140, 20]
        case .yellow: [240, 220, 40]
        case .green: [40, 170, 60]
        case .blue: [40, 90, 225]
        case .purple: [145, 60, 195]
        case .white: [245, 245, 245]
        }
    }

    /// "warm", "cool" or "neutral".
    public var temperature: String {
        switch self {
        case .red, .orange, .yellow: "warm"
        case .green, .blue, .purple: "cool"
        case .white: "neutral"
        }
    }
}

/// An object's size.
public enum ObjectSize: String, CaseIterable, Sendable {
    case small, large

    /// The object's half-extent as a share of a grid cell's side.
    var radiusShare: Double { self == .small ? 0.24 : 0.40 }
}

/// A row of the 3×3 grid objects sit in.
public enum GridRow: Int, CaseIterable, Sendable {
    case top, middle, bottom
    public var word: String { ["top", "middle", "bottom"][rawValue] }
}

/// A column of the 3×3 grid.
public enum GridColumn: Int, CaseIterable, Sendable {
    case left, center, right
    public var word: String { ["left", "center", "right"][rawValue] }
}

/// A cell of the 3×3 grid.
public struct GridPosition: Hashable, Sendable {
    public var row: GridRow
    public var column: GridColumn

    public init(row: GridRow, column: GridColumn) {
        self.row = row
        self.column = column
    }

    /// "top left", "middle center": always two words, the canonical answer to "where" questions.
    public var phrase: String { row.word + " " + column.word }

    /// All nine cells, row by row.
    public static let all: [GridPosition] = GridRow.allCases.flatMap { row in
        GridColumn.allCases.map { GridPosition(row: row, column: $0) }
    }
}

/// Number words for counts in running text ("two red circles").
enum NumberWords {
    static let words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    static func word(_ n: Int) -> String { n >= 0 && n < words.count ? words[n] : String(n) }
}
