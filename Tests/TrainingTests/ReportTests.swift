import Foundation
import Models
import Testing
@testable import Training

@Suite("Report: SVG charts and the HTML page")
struct ReportTests {
    @Test("ticks are round numbers covering the data")
    func ticks() {
        let ticks = SVGChart.niceTicks(from: 0, to: 0.83)
        #expect(ticks.first! <= 0 && ticks.last! >= 0.83)
        #expect(ticks.count == 6 && zip(ticks, ticks.dropFirst()).allSatisfy { abs($1 - $0 - 0.2) < 1e-9 })
        let big = SVGChart.niceTicks(from: 0, to: 1234)
        #expect(big.first == 0 && big.last! >= 1234 && big.count <= 8)
        #expect(big.allSatisfy { $0.truncatingRemainder(dividingBy: 250) == 0 })
    }

    @Test("bar heights are proportional to the values, and text is escaped")
    func bars() throws {
        let svg = SVGChart.bars(categories: ["a<b", "c"], series: [(name: "x&y", values: [0.25, 1.0])], title: "T", yLabel: "y",
                                width: 400, height: 240)
        #expect(svg.contains("a&lt;b") && svg.contains("x&amp;y") && !svg.contains("a<b"))
        let heights = try heights(of: svg)
        #expect(heights.count == 2)
        #expect(abs(heights[1] / heights[0] - 4) < 0.05)
    }

    @Test("a line chart draws one polyline per series through every point")
    func lines() {
        let svg = SVGChart.lines([.init(name: "s", points: [(0, 1), (1, 2), (2, 0.5)])], title: "loss", xLabel: "step", yLabel: "loss")
        #expect(svg.components(separatedBy: "<polyline").count == 2)
        let points = svg.components(separatedBy: "points=\"")[1].prefix { $0 != "\"" }.split(separator: " ")
        #expect(points.count == 3)
    }

    @Test("marker labels that would overprint stack in rows; far-apart ones stay on the top row")
    func markerLabels() {
        // "pretrain-noisy" at 0 and "pretrain-hq" 20 pixels later (short stages) would overlap.
        let widths = ["pretrain-noisy", "pretrain-hq", "sft", "reward"].map(SVGChart.labelWidth)
        #expect(SVGChart.markerLabelRows(starts: [0, 20, 200, 600], widths: widths) == [0, 1, 0, 0])
        #expect(SVGChart.markerLabelRows(starts: [0, 10, 20], widths: [50, 50, 50]) == [0, 1, 2])
        #expect(SVGChart.markerLabelRows(starts: [0, 10, 100], widths: [50, 50, 50]) == [0, 1, 0])
        let svg = SVGChart.lines([.init(name: "s", points: [(0, 1), (1000, 2)])], title: "loss", xLabel: "step", yLabel: "loss",
                                 markers: [(0, "pretrain-noisy"), (10, "pretrain-hq")])
        let ys = svg.components(separatedBy: "fill=\"#555\">").dropLast().map { $0.components(separatedBy: " y=\"").last!.prefix { $0 != "\"" } }
        #expect(ys.count == 2 && Set(ys).count == 2, "\(ys)")
    }

    @Test("a comparison with the language-model grid gets a column per arm, a caption accuracy row and the grid chart")
    func comparisonGrid() throws {
        func run(_ design: AdapterLayout.Architecture, _ mode: LanguageModelTraining.Mode?, exactMatch: Double, caption: Double) -> ComparisonRun {
            ComparisonRun(design: design, languageModel: mode, seed: 0, evaluation: ["exact_match": exactMatch, "loss": 0.5],
                          textDrift: TextDrift(basePerplexity: 2, perplexity: mode == nil ? 2 : 1.9, klDivergence: mode == nil ? 0 : 0.01, positions: 10),
                          trainableParameters: 100, steps: 3, trainingImages: 12, trainingTokens: 400, trainingSeconds: 2, positionsPerImage: 1,
                          generation: [], peakMemoryMB: 100, captionAccuracy: caption, captionRecall: 0.5)
        }
        let arms = [ComparisonArm(design: .crossAttention), ComparisonArm(design: .crossAttention, languageModel: .lora),
                    ComparisonArm(design: .llavaLinear), ComparisonArm(design: .llavaLinear, languageModel: .lora)]
        let comparison = ComparisonReport(runs: [run(.crossAttention, nil, exactMatch: 0.3, caption: 0.61), run(.crossAttention, .lora, exactMatch: 0.35, caption: 0.62),
                                                 run(.llavaLinear, nil, exactMatch: 0.2, caption: 0.41), run(.llavaLinear, .lora, exactMatch: 0.45, caption: 0.73)],
                                          arms: arms, stages: ["sft"], seconds: 1)
        #expect(comparison.designs == [.crossAttention, .llavaLinear])
        let markdown = comparison.markdown
        #expect(markdown.contains("| | cross-attention | cross-attention + LoRA LM | llava-linear | llava-linear + LoRA LM |"))
        #expect(markdown.contains("| caption accuracy (held-out descriptions) | 61.0 % | 62.0 % | 41.0 % | 73.0 % |"))
        #expect(markdown.contains("| exact match, overall | 30.0 % | 35.0 % | 20.0 % | 45.0 % |"))
        // The JSON names each arm's mode and reads back into the same columns.
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("grid-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: url) }
        try comparison.json.write(to: url)
        let again = try ComparisonReport.load(from: url)
        #expect(again.arms == arms && again.markdown == markdown)
        var page = RunReport(evaluations: [], summaries: [], samples: [], seconds: 1)
        page.comparison = comparison
        let html = page.html
        #expect(html.contains("Idefics2") && html.contains("language model lora") && html.contains("llava-linear: caption accuracy"))
        #expect(html.contains("<th>llava-linear + LoRA LM</th>"))
    }

    @Test("the page shows every model's answers, marks them right or wrong, and embeds the picture")
    func page() {
        let png = Data([0x89, 0x50, 0x4E, 0x47, 1, 2, 3])
        let report = RunReport(
            evaluations: [.init(name: "base", metrics: ["exact_match": 0.25, "exact_match/color": 0.1]),
                          .init(name: "sft", metrics: ["exact_match": 0.5, "exact_match/color": 0.9, "exact_match_blank_images": 0.2])],
            summaries: [], lossCurves: [(stage: "sft", points: [(1, 2.0), (2, 1.0)])],
            samples: [.init(id: "q1", image: png, question: "What color is the circle?", reference: "red", type: "color",
                            answers: [(model: "base", answer: "blue"), (model: "sft", answer: "Red.")])],
            seconds: 12)
        let html = report.html
        #expect(html.contains("data:image/png;base64,\(png.base64EncodedString())"))
        #expect(html.contains("✗ base: blue") && html.contains("✓ sft: Red."))
        #expect(html.contains("50.0 %") && html.contains("90.0 %"))
        #expect(html.contains("sft, image blanked"))
        #expect(html.contains("This run of vlm run: 12 s;"))
    }

    @Test("the time line gives this invocation's seconds and the stages' training seconds, which a rerun keeps")
    func timeLine() throws {
        func summary(_ stage: String, seconds: Double) throws -> StageSummary {
            let json = #"{"stage": "\#(stage)", "kind": "sft", "steps": 1, "samples": 1, "skippedSteps": 0, "skippedSamples": {}, "#
                + #""trainableParameters": 1, "seconds": \#(seconds), "tokensPerSecond": 1, "dataWaitSeconds": 0, "evaluation": {}, "output": "x"}"#
            return try JSONDecoder().decode(StageSummary.self, from: Data(json.utf8))
        }
        let rerun = RunReport(evaluations: [], summaries: [try summary("a", seconds: 100.4), try summary("b", seconds: 200.3)], seconds: 20)
        #expect(rerun.markdown.contains("This run of vlm run: 20 s; the vision recipe's stages trained for 301 s when they ran."))
        #expect(rerun.html.contains("the vision recipe&#39;s stages trained for 301 s") || rerun.html.contains("the vision recipe's stages trained for 301 s"))
    }

    @Test("reward distributions are drawn as histograms of the share of samples per bin, with their means")
    func rewards() {
        var report = RunReport(evaluations: [], summaries: [], seconds: 1)
        report.rewardDistributions = [(title: "RS", series: [("all", [-1, 0, 0, 1]), ("kept", [1, 1])])]
        let html = report.html
        #expect(html.contains("<h2>Rewards</h2>") && html.contains("all: mean 0.000 over 4; kept: mean 1.000 over 2"))
        #expect(report.markdown.contains("## Rewards\n\n- RS: all: mean 0.000 over 4; kept: mean 1.000 over 2."))
        let svg = SVGChart.histogram([("kept", [1, 1]), ("all", [-1, 0, 0, 1])], title: "h", xLabel: "r", bins: 4)
        #expect(svg.components(separatedBy: "<polyline").count == 3)
        // Every value lands in a bin: the steps of each series add up to a share of 1.
        let first = svg.components(separatedBy: "points=\"")[1].prefix { $0 != "\"" }.split(separator: " ")
        #expect(first.count == 2 + 2 * 4)
    }

    /// Exact McNemar p-values against sums of binomial terms done by hand (Python's `math.comb`).
    @Test("a paired change counts answers gained and lost on the same questions, with an exact McNemar p-value")
    func pairedChange() {
        #expect(PairedChange.mcNemarPValue(gained: 0, lost: 0) == 1)
        #expect(abs(PairedChange.mcNemarPValue(gained: 3, lost: 2) - 1) < 1e-12)                  // 2·(1 + 5 + 10)/32
        #expect(abs(PairedChange.mcNemarPValue(gained: 10, lost: 0) - 2 / 1024) < 1e-12)
        #expect(abs(PairedChange.mcNemarPValue(gained: 5, lost: 15) - 0.04138946533203125) < 1e-12)
        #expect(abs(PairedChange.mcNemarPValue(gained: 550, lost: 450) - 0.0017305360849763176) < 1e-9)

        func answers(_ correct: [Bool], _ rewards: [Double], ids: [String]? = nil) -> [ScoredAnswer] {
            zip(correct, rewards).enumerated().map { index, entry in
                ScoredAnswer(id: ids?[index] ?? "q\(index)", type: "color", answer: "", correct: entry.0, reward: entry.1)
            }
        }
        // q0 gained, q1 lost, q2 and q3 right both times, q4 wrong both times; q9 only after: left out.
        let before = answers([false, true, true, true, false], [0, 1, 1, 1, 0])
        let after = answers([true, false, true, true, false, true], [1, 0, 2, 3, 0, 5], ids: ["q0", "q1", "q2", "q3", "q4", "q9"])
        let change = PairedChange(before: "sft", before, after: "dpo", after)
        #expect(change.questions == 5 && change.gained == 1 && change.lost == 1 && change.exactMatchChange == 0)
        #expect(abs(change.exactMatchPValue - 1) < 1e-12 && !change.exactMatchChangeIsSignificant)
        // Differences 1, −1, 1, 2, 0: mean 0.6, sample variance 1.3.
        #expect(abs(change.rewardChange - 0.6) < 1e-12 && abs(change.rewardChangeStandardError - (1.3 / 5).squareRoot()) < 1e-12)
        #expect(change.rewardChangeIsSignificant == (0.6 > 2 * (1.3 / 5).squareRoot()))

        var report = RunReport(evaluations: [], summaries: [], seconds: 1)
        report.pairedChanges = [change]
        #expect(report.markdown.contains("- dpo against sft: exact match +0.0 points (1 gained, 1 lost of 5; p = 1.00, within noise); "
                                         + "reward +0.600 ± 0.510 (within noise)."))
        #expect(report.html.contains("<td>dpo</td><td>sft</td><td>5</td><td>1</td><td>1</td>"))
        let json = try? JSONSerialization.jsonObject(with: report.json) as? [String: Any]
        #expect((json?["paired_changes"] as? [[String: Any]])?.first?["lost"] as? Int == 1)
        // One question: no standard error; metrics.json leaves it out rather than failing on NaN.
        report.pairedChanges = [PairedChange(before: "sft", Array(before.prefix(1)), after: "dpo", Array(after.prefix(1)))]
        let single = try? JSONSerialization.jsonObject(with: report.json) as? [String: Any]
        let figures = (single?["paired_changes"] as? [[String: Any]])?.first
        #expect(figures?["gained"] as? Int == 1 && figures?["reward_change"] as? Double == 1 && figures?["reward_change_standard_error"] == nil)
    }

    private func heights(of svg: String) throws -> [Double] {
        svg.components(separatedBy: "<rect ").dropFirst().compactMap { element -> Double? in
            guard element.contains("<title>"), let range = element.range(of: "height=\"") else { return nil }
            return Double(element[range.upperBound...].prefix { $0 != "\"" })
        }
    }
}
