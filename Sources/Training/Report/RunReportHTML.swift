import Foundation

extension RunReport {
    /// The report as one self-contained HTML page: inline CSS, charts as inline SVG, pictures as
    /// `data:` URLs. It opens in any browser, offline.
    public var html: String {
        let e = SVGChart.escape
        var page = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>VLMKit main job</title>
            <style>
            body { font-family: sans-serif; margin: 24px auto; max-width: 960px; color: #222; }
            h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
            .headline { font-size: 15px; background: #f4f7fb; padding: 10px 14px; border-left: 4px solid #0072B2; }
            table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
            th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th:first-child, td:first-child { text-align: left; }
            .samples { display: flex; flex-wrap: wrap; gap: 12px; }
            .sample { border: 1px solid #ddd; padding: 8px; width: 280px; font-size: 12px; }
            .sample img { width: 192px; height: 192px; image-rendering: pixelated; display: block; margin-bottom: 6px; }
            .ok { color: #0a7d2c; } .wrong { color: #b3261e; } .muted { color: #777; font-size: 12px; }
            </style></head><body>
            <h1>VLMKit main job</h1>
            <p class="headline">\(e(headline))</p>
            <p class="muted">\(e(timeLine)) \(e(machine))</p>

            """
        page += accuracySection
        page += captionSection
        page += lossSection
        page += stagesSection
        page += encoderSection
        page += rewardSection
        page += pairedChangesTable
        page += samplesSection
        page += comparisonSection
        page += "<p class=\"muted\">Exact match: the greedy answer after lower-casing, collapsing spaces and dropping a final full stop "
            + "equals the reference. “Image blanked”: the same questions with a black picture — what the model can do without looking.</p>\n"
        return page + "</body></html>\n"
    }

    private var accuracySection: String {
        let types = questionTypes
        let categories = ["overall"] + types
        func values(_ metrics: [String: Double], suffix: String = "") -> [Double?] {
            [metrics["exact_match" + suffix]] + types.map { metrics["exact_match\(suffix)/\($0)"] }
        }
        var series = evaluations.map { (name: $0.name, values: values($0.metrics)) }
        if let final = evaluations.last, final.metrics["exact_match_blank_images"] != nil {
            series.append((name: "\(final.name), image blanked", values: values(final.metrics, suffix: "_blank_images")))
        }
        var section = "<h2>Held-out exact match by question type</h2>\n"
        section += SVGChart.bars(categories: categories, series: series, title: "Exact match on held-out questions",
                                 yLabel: "exact match", width: 940, height: 320) + "\n"
        section += "<table><tr><th>model</th>" + categories.map { "<th>\(SVGChart.escape($0))</th>" }.joined() + "</tr>\n"
        for entry in series {
            section += "<tr><td>\(SVGChart.escape(entry.name))</td>"
                + entry.values.map { "<td>\(Self.percent($0))</td>" }.joined() + "</tr>\n"
        }
        return section + "</table>\n"
    }

    private var captionSection: String {
        guard evaluations.contains(where: { $0.metrics["caption_accuracy"] != nil }) else { return "" }
        var series: [(name: String, values: [Double?])] = [
            ("chat: attribute accuracy", evaluations.map { $0.metrics["caption_accuracy"] }),
            ("chat: objects mentioned", evaluations.map { $0.metrics["caption_recall"] }),
        ]
        if evaluations.contains(where: { $0.metrics["caption_layout_accuracy"] != nil }) {
            series += [("caption: attribute accuracy", evaluations.map { $0.metrics["caption_layout_accuracy"] }),
                       ("caption: objects mentioned", evaluations.map { $0.metrics["caption_layout_recall"] }),
                       ("caption, blanked: accuracy", evaluations.map { $0.metrics["caption_layout_accuracy_blank_images"] })]
        }
        return "<h2>Held-out scene descriptions</h2>\n"
            + SVGChart.bars(categories: evaluations.map(\.name), series: series,
                            title: "Descriptions of held-out pictures, scored against their scene records", yLabel: "share",
                            width: 940, height: 280) + "\n"
            + "<p class=\"muted\">Each model describes held-out pictures, asked in chat (\"Describe the image in detail.\") and "
            + "as a caption (the image alone, continued as the pretraining pairs are laid out: what the pretraining stages learn; blanked: every picture black); "
            + "a description's attribute accuracy is the share of the colours, sizes, shapes and positions it states that are "
            + "true of the object it names, and objects mentioned the share of the scene's objects it names (the world's "
            + "CaptionScore).</p>\n"
    }

    /// The stages whose loss is the captions' and answers' cross-entropy (an encoder stage's is
    /// over patch labels, on another scale: it has its own chart).
    private var languageLossCurves: [(stage: String, points: [(step: Int, loss: Double)])] {
        let encoders = Set(summaries.filter { $0.kind == .encoder }.map(\.stage))
        return lossCurves.filter { !encoders.contains($0.stage) }
    }

    private var encoderSection: String {
        guard !encoderSentences.isEmpty else { return "" }
        let encoders = Set(summaries.filter { $0.kind == .encoder }.map(\.stage))
        let series = lossCurves.filter { encoders.contains($0.stage) }.map { curve in
            SVGChart.Series(name: curve.stage, points: Self.smoothed(curve.points).map { (Double($0.step), $0.loss) })
        }
        return "<h2>Image encoder pretraining</h2>\n" + encoderSentences.map { "<p>\(SVGChart.escape($0))</p>\n" }.joined()
            + (series.isEmpty ? "" : SVGChart.lines(series, title: "Patch-label loss (sum over the label fields, smoothed)",
                                                    xLabel: "optimiser step", yLabel: "loss", width: 940) + "\n")
    }

    private var lossSection: String {
        let lossCurves = languageLossCurves
        guard !lossCurves.isEmpty else { return "" }
        var offset = 0
        var series: [SVGChart.Series] = []
        var markers: [(x: Double, label: String)] = []
        for curve in lossCurves {
            markers.append((Double(offset), curve.stage))
            series.append(SVGChart.Series(name: curve.stage, points: Self.smoothed(curve.points).map { (Double(offset + $0.step), $0.loss) }))
            offset += curve.points.last?.step ?? 0
        }
        return "<h2>Training loss</h2>\n"
            + SVGChart.lines(series, title: "Training loss per learned token (smoothed)", xLabel: "optimiser step (stages in order)",
                             yLabel: "loss", markers: markers, width: 940) + "\n"
    }

    /// An exponential moving average (weight 0.9), so the trend shows through per-step noise.
    static func smoothed(_ points: [(step: Int, loss: Double)]) -> [(step: Int, loss: Double)] {
        var average: Double?
        return points.map { point in
            let next = average.map { 0.9 * $0 + 0.1 * point.loss } ?? point.loss
            average = next
            return (point.step, next)
        }
    }

    private var stagesSection: String {
        var section = "<h2>Stages</h2>\n<table><tr><th>stage</th><th>kind</th><th>steps</th><th>loss first → last</th>"
            + "<th>tokens/s</th><th>seconds</th><th>text-only logits = base</th></tr>\n"
        for s in summaries {
            section += "<tr><td>\(SVGChart.escape(s.stage))</td><td>\(s.kind.rawValue)</td><td>\(s.steps)</td>"
                + String(format: "<td>%.3f → %.3f</td><td>%.0f</td><td>%.0f</td>", s.firstLoss ?? .nan, s.finalLoss ?? .nan,
                         s.tokensPerSecond, s.seconds)
                + "<td>\(s.textOnlyLogitsUnchanged == true ? "yes, bit for bit" : "<b>no</b>")</td></tr>\n"
        }
        return section + "</table>\n"
    }

    private var rewardSection: String {
        guard !rewardDistributions.isEmpty else { return "" }
        var section = "<h2>Rewards</h2>\n"
        for distribution in rewardDistributions {
            let means = Self.rewardMeans(distribution.series)
            section += SVGChart.histogram(distribution.series, title: distribution.title, xLabel: "reward", width: 940) + "\n"
            section += "<p class=\"muted\">\(SVGChart.escape(means.joined(separator: "; ")))</p>\n"
        }
        return section
    }

    /// Each post-training policy against the one it was trained from; changes within noise are greyed.
    private var pairedChangesTable: String {
        guard !pairedChanges.isEmpty else { return "" }
        func cell(_ text: String, significant: Bool) -> String {
            "<td\(significant ? "" : " class=\"muted\"")>\(SVGChart.escape(text))\(significant ? "" : " (within noise)")</td>"
        }
        var table = "<h3>Post-training, question by question</h3>\n<p class=\"muted\">\(SVGChart.escape(Self.pairedChangesNote))</p>\n"
        table += "<table><tr><th>policy</th><th>trained from</th><th>questions</th><th>gained</th><th>lost</th>"
            + "<th>exact match change</th><th>p</th><th>reward change</th></tr>\n"
        for change in pairedChanges {
            table += "<tr><td>\(SVGChart.escape(change.after))</td><td>\(SVGChart.escape(change.before))</td>"
                + "<td>\(change.questions)</td><td>\(change.gained)</td><td>\(change.lost)</td>"
                + cell(String(format: "%+.1f points", 100 * change.exactMatchChange), significant: change.exactMatchChangeIsSignificant)
                + String(format: "<td>%.2f</td>", change.exactMatchPValue)
                + cell(String(format: "%+.3f ± %.3f", change.rewardChange, change.rewardChangeStandardError),
                       significant: change.rewardChangeIsSignificant) + "</tr>\n"
        }
        return table + "</table>\n"
    }

    private var comparisonSection: String {
        guard let comparison else { return "" }
        let types = comparison.questionTypes
        let categories = ["overall"] + types + ["overall, image blanked"]
        let keys = ["exact_match"] + types.map { "exact_match/\($0)" } + ["exact_match_blank_images"]
        let series = comparison.arms.map { arm -> (name: String, values: [Double?]) in
            let statistics = comparison.statistics(of: arm)
            return (arm.description, keys.map { statistics[$0]?.mean })
        }
        let seeds = comparison.seeds
        var section = "<h2>Fusion designs compared: cross-attention and the token stream</h2>\n"
        section += "<p class=\"muted\">\(SVGChart.escape("The same base Llama (frozen unless the column says LoRA LM or full LM), image encoder initialisation, data and steps (stages \(comparison.stages.joined(separator: ", ")); \(seeds) seed\(seeds == 1 ? "" : "s"), mean shown). Docs/llava.md explains the table."))</p>\n"
        section += SVGChart.bars(categories: categories, series: series, title: "Held-out exact match by question type, per fusion design",
                                 yLabel: "exact match", width: 940, height: 320) + "\n"
        section += captionChart(comparison)
        section += "<table><tr><th></th>" + comparison.arms.map { "<th>\(SVGChart.escape($0.description))</th>" }.joined() + "</tr>\n"
        let statistics = comparison.arms.map { comparison.statistics(of: $0) }
        for row in comparison.rows {
            section += "<tr><td>\(SVGChart.escape(row.label))</td>"
                + comparison.cells(row, statistics).map { "<td>\(SVGChart.escape($0))</td>" }.joined() + "</tr>\n"
        }
        return section + "</table>\n"
    }

    /// Idefics2's grid at a glance: held-out exact match and caption accuracy per design, one bar
    /// per language-model mode (empty when the comparison has neither the grid nor captions).
    private func captionChart(_ comparison: ComparisonReport) -> String {
        let modes = comparison.arms.map(\.languageModel).reduce(into: [LanguageModelTraining.Mode]()) { if !$0.contains($1) { $0.append($1) } }
        let hasCaptions = comparison.runs.contains { $0.captionAccuracy != nil }
        guard modes.count > 1 || hasCaptions else { return "" }
        let categories = comparison.designs.flatMap { ["\($0.rawValue): exact match", "\($0.rawValue): caption accuracy"] }
        let series = modes.map { mode -> (name: String, values: [Double?]) in
            let values = comparison.designs.flatMap { design -> [Double?] in
                let statistics = comparison.statistics(of: ComparisonArm(design: design, languageModel: mode))
                return [statistics["exact_match"]?.mean, statistics["caption_accuracy"]?.mean]
            }
            return ("language model \(mode.rawValue)", values)
        }
        return SVGChart.bars(categories: categories, series: series, title: "Each design with the language model frozen and trained (Idefics2's grid)",
                             yLabel: "share", width: 940, height: 320) + "\n"
    }

    private var samplesSection: String {
        guard !samples.isEmpty else { return "" }
        var section = "<h2>Sample held-out questions</h2>\n<div class=\"samples\">\n"
        for sample in samples {
            let mime = sample.image.starts(with: [0x89, 0x50, 0x4E, 0x47]) ? "image/png" : "image/jpeg"
            section += "<div class=\"sample\"><img alt=\"\(SVGChart.escape(sample.id))\" src=\"data:\(mime);base64,\(sample.image.base64EncodedString())\">"
            section += "<b>\(SVGChart.escape(sample.question))</b><br>reference: <b>\(SVGChart.escape(sample.reference))</b> "
                + "<span class=\"muted\">(\(SVGChart.escape(sample.type)))</span><br>"
            for answer in sample.answers {
                let correct = normalizedAnswer(answer.answer) == normalizedAnswer(sample.reference)
                section += "<span class=\"\(correct ? "ok" : "wrong")\">\(correct ? "✓" : "✗") \(SVGChart.escape(answer.model)): "
                    + "\(SVGChart.escape(answer.answer.isEmpty ? "(nothing)" : answer.answer))</span><br>"
            }
            section += "</div>\n"
        }
        return section + "</div>\n"
    }
}
