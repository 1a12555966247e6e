import Foundation

/// Charts drawn as inline SVG text, for reports that must open in any browser with no external
/// assets: a line chart (loss curves) and a grouped bar chart (accuracy by category).
public enum SVGChart {
    /// One line of a line chart.
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        /// A CSS colour; nil takes the next one of ``palette``.
        public var color: String?
        public init(name: String, points: [(x: Double, y: Double)], color: String? = nil) {
            self.name = name
            self.points = points
            self.color = color
        }
    }

    /// Colours that stay distinct for the colour-blind (Okabe–Ito).
    public static let palette = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]

    /// A line chart of `series` with labelled axes, a legend, and optional dashed vertical markers
    /// (e.g. where each stage starts) labelled at the top.
    public static func lines(_ series: [Series], title: String, xLabel: String, yLabel: String,
                             markers: [(x: Double, label: String)] = [], width: Int = 720, height: Int = 300) -> String {
        let frame = Frame(width: width, height: height)
        let xs = series.flatMap { $0.points.map(\.x) } + markers.map(\.x)
        let ys = series.flatMap { $0.points.map(\.y) }.filter(\.isFinite)
        guard let xMin = xs.min(), let xMax = xs.max(), let yMinData = ys.min(), let yMaxData = ys.max() else {
            return frame.empty(title: title)
        }
        let yTicks = niceTicks(from: min(0, yMinData), to: yMaxData)
        let xTicks = niceTicks(from: xMin, to: xMax)
        let xScale = Scale(domain: (xTicks.first!, xTicks.last!), range: (frame.left, frame.right))
        let yScale = Scale(domain: (yTicks.first!, yTicks.last!), range: (frame.bottom, frame.top))
        var body = frame.open(title: title) + frame.axes(xLabel: xLabel, yLabel: yLabel)
        body += yTicks.map { frame.yTick(y: yScale($0), label: format($0)) }.joined()
        body += xTicks.map { frame.xTick(x: xScale($0), label: format($0)) }.joined()
        let markerXs = markers.map { xScale($0.x) }
        let labelRows = markerLabelRows(starts: markerXs.map { $0 + 3 }, widths: markers.map { labelWidth($0.label) })
        for (marker, (x, row)) in zip(markers, zip(markerXs, labelRows)) {
            body += "<line x1=\"\(f(x))\" y1=\"\(f(frame.top))\" x2=\"\(f(x))\" y2=\"\(f(frame.bottom))\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>"
            body += "<text x=\"\(f(x + 3))\" y=\"\(f(frame.top + 10 + 11 * Double(row)))\" font-size=\"10\" fill=\"#555\">\(escape(marker.label))</text>"
        }
        for (index, line) in series.enumerated() where !line.points.isEmpty {
            let color = line.color ?? palette[index % palette.count]
            let path = line.points.filter { $0.y.isFinite }.map { "\(f(xScale($0.x))),\(f(yScale($0.y)))" }.joined(separator: " ")
            body += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.6\" points=\"\(path)\"><title>\(escape(line.name))</title></polyline>"
        }
        body += frame.legend(series.enumerated().map { ($0.element.name, $0.element.color ?? palette[$0.offset % palette.count]) })
        return body + "</svg>"
    }

    /// The text row (0 = top) of each marker label, so that labels starting close together (short
    /// stages) stack instead of overprinting: each label takes the highest row whose last label
    /// ends, with a small gap, before it starts. `starts` are in drawing order, left to right.
    static func markerLabelRows(starts: [Double], widths: [Double], gap: Double = 4) -> [Int] {
        var rowEnds: [Double] = []
        return zip(starts, widths).map { start, width in
            let row = rowEnds.firstIndex { $0 + gap <= start } ?? rowEnds.count
            if row == rowEnds.count { rowEnds.append(0) }
            rowEnds[row] = start + width
            return row
        }
    }

    /// The drawn width of a 10-pixel sans-serif label, estimated (SVG text is not measured here).
    static func labelWidth(_ label: String) -> Double { Double(label.count) * 5.6 }

    /// A grouped bar chart: for each category, one bar per series (values in 0…`maximum`), with
    /// an optional dashed reference line per category (e.g. a baseline) and values printed as percent
    /// when `percent` is true.
    public static func bars(categories: [String], series: [(name: String, values: [Double?])], title: String, yLabel: String,
                            maximum: Double = 1, percent: Bool = true, width: Int = 720, height: Int = 300) -> String {
        let frame = Frame(width: width, height: height)
        guard !categories.isEmpty, !series.isEmpty else { return frame.empty(title: title) }
        let yScale = Scale(domain: (0, maximum), range: (frame.bottom, frame.top))
        var body = frame.open(title: title) + frame.axes(xLabel: nil, yLabel: yLabel)
        for tick in niceTicks(from: 0, to: maximum) {
            body += frame.yTick(y: yScale(tick), label: percent ? String(format: "%.0f%%", tick * 100) : format(tick))
        }
        let groupWidth = (frame.right - frame.left) / Double(categories.count)
        let barWidth = groupWidth * 0.8 / Double(series.count)
        for (c, category) in categories.enumerated() {
            let groupLeft = frame.left + Double(c) * groupWidth + groupWidth * 0.1
            for (s, entry) in series.enumerated() {
                guard c < entry.values.count, let value = entry.values[c], value.isFinite else { continue }
                let x = groupLeft + Double(s) * barWidth
                let y = yScale(min(value, maximum))
                let label = percent ? String(format: "%.1f%%", value * 100) : format(value)
                body += "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(max(barWidth - 1, 1)))\" height=\"\(f(frame.bottom - y))\" "
                    + "fill=\"\(palette[s % palette.count])\"><title>\(escape(entry.name)), \(escape(category)): \(label)</title></rect>"
            }
            body += "<text x=\"\(f(groupLeft + groupWidth * 0.4))\" y=\"\(f(frame.bottom + 14))\" font-size=\"11\" text-anchor=\"middle\">\(escape(category))</text>"
        }
        body += frame.legend(series.enumerated().map { ($0.element.name, palette[$0.offset % palette.count]) })
        return body + "</svg>"
    }

    /// A histogram of `values` for each series, overlaid as outlined steps over shared bins.
    public static func histogram(_ series: [(name: String, values: [Double])], title: String, xLabel: String,
                                 bins: Int = 20, width: Int = 720, height: Int = 300) -> String {
        let all = series.flatMap(\.values).filter(\.isFinite)
        guard let low = all.min(), let high = all.max() else { return Frame(width: width, height: height).empty(title: title) }
        let span = high > low ? high - low : 1
        let binWidth = span / Double(bins)
        let lines = series.map { entry -> Series in
            var counts = [Double](repeating: 0, count: bins)
            for value in entry.values where value.isFinite {
                counts[min(bins - 1, Int((value - low) / binWidth))] += 1
            }
            let total = Double(max(1, entry.values.count))
            var points: [(x: Double, y: Double)] = [(low, 0)]
            for (bin, count) in counts.enumerated() {
                let left = low + Double(bin) * binWidth
                points += [(left, count / total), (left + binWidth, count / total)]
            }
            points.append((low + Double(bins) * binWidth, 0))
            return Series(name: entry.name, points: points)
        }
        return self.lines(lines, title: title, xLabel: xLabel, yLabel: "share of samples", width: width, height: height)
    }

    /// Round tick values covering `from…to` (about five of them).
    static func niceTicks(from low: Double, to high: Double) -> [Double] {
        let span = high > low ? high - low : max(abs(high), 1)
        let rough = span / 5
        let magnitude = Foundation.pow(10, Foundation.log10(rough).rounded(.down))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= rough } ?? 10 * magnitude
        let first = (low / step).rounded(.down) * step
        var ticks: [Double] = []
        var value = first
        while value < high + step * 0.999 && ticks.count < 12 {
            ticks.append(value)
            value = first + Double(ticks.count) * step
        }
        if ticks.count < 2 { ticks.append(first + step) }
        return ticks
    }

    /// Text safe inside SVG/HTML elements and attributes.
    public static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    static func format(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e7 { return String(Int(value)) }
        return String(format: abs(value) >= 10 ? "%.0f" : (abs(value) >= 1 ? "%.1f" : "%.2f"), value)
    }

    static func f(_ value: Double) -> String { String(format: "%.1f", value) }

    /// A linear map from data to pixels.
    struct Scale {
        let domain: (Double, Double), range: (Double, Double)
        func callAsFunction(_ value: Double) -> Double {
            let span = domain.1 - domain.0
            return span == 0 ? range.0 : range.0 + (value - domain.0) / span * (range.1 - range.0)
        }
    }

    /// The plotting area of a chart and its furniture.
    struct Frame {
        let width: Int, height: Int
        var left: Double { 56 }
        var right: Double { Double(width) - 170 }
        var top: Double { 30 }
        var bottom: Double { Double(height) - 40 }

        func open(title: String) -> String {
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" "
                + "font-family=\"sans-serif\" role=\"img\" aria-label=\"\(escape(title))\">"
                + "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>"
                + "<text x=\"\(f(left))\" y=\"18\" font-size=\"13\" font-weight=\"bold\">\(escape(title))</text>"
        }

        func empty(title: String) -> String { open(title: title) + "<text x=\"\(f(left))\" y=\"60\" font-size=\"12\">no data</text></svg>" }

        func axes(xLabel: String?, yLabel: String) -> String {
            var s = "<line x1=\"\(f(left))\" y1=\"\(f(bottom))\" x2=\"\(f(right))\" y2=\"\(f(bottom))\" stroke=\"#333\"/>"
                + "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(bottom))\" stroke=\"#333\"/>"
                + "<text transform=\"translate(14 \(f((top + bottom) / 2))) rotate(-90)\" font-size=\"11\" text-anchor=\"middle\">\(escape(yLabel))</text>"
            if let xLabel {
                s += "<text x=\"\(f((left + right) / 2))\" y=\"\(height - 6)\" font-size=\"11\" text-anchor=\"middle\">\(escape(xLabel))</text>"
            }
            return s
        }

        func yTick(y: Double, label: String) -> String {
            "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(right))\" y2=\"\(f(y))\" stroke=\"#eee\"/>"
                + "<text x=\"\(f(left - 4))\" y=\"\(f(y + 4))\" font-size=\"10\" text-anchor=\"end\">\(escape(label))</text>"
        }

        func xTick(x: Double, label: String) -> String {
            "<line x1=\"\(f(x))\" y1=\"\(f(bottom))\" x2=\"\(f(x))\" y2=\"\(f(bottom + 4))\" stroke=\"#333\"/>"
                + "<text x=\"\(f(x))\" y=\"\(f(bottom + 15))\" font-size=\"10\" text-anchor=\"middle\">\(escape(label))</text>"
        }

        func legend(_ entries: [(String, String)]) -> String {
            entries.enumerated().map { index, entry in
                let y = top + 6 + Double(index) * 16
                return "<rect x=\"\(f(right + 12))\" y=\"\(f(y - 8))\" width=\"12\" height=\"10\" fill=\"\(entry.1)\"/>"
                    + "<text x=\"\(f(right + 28))\" y=\"\(f(y + 1))\" font-size=\"11\">\(escape(entry.0))</text>"
            }.joined()
        }
    }
}
