import Checkpoint
import Foundation
import Tokenization

/// Turns ranked candidates into dataset files that `vlm train` reads: the kept answers of
/// rejection sampling (messages JSONL) and on-policy DPO pairs (TRL preference JSONL). Image paths
/// are relative to the written file, as in every dataset format `vlm train` reads (a run folder
/// moved together with its data still reads); each file is written atomically, and only when
/// `write` is true (rank 0 of a data-parallel job; the others compute the same figures).
enum OnPolicyData {
    /// What rejection sampling kept.
    struct Selection {
        var candidates = 0, checked = 0, passed = 0, kept = 0
        var meanRewardAll = Double.nan, meanRewardKept = Double.nan
    }

    /// Keeps, per prompt, the `keep_top` best-rewarded candidates among those that pass the
    /// correctness check (where there is a reference answer) and score at least `min_reward`.
    static func writeKept(_ all: [PromptCandidates], prompts: [SamplingPrompt], settings: PostTrainingSettings, to file: URL,
                          write: Bool = true) throws -> Selection {
        var selection = Selection()
        var lines: [String] = []
        var allRewards: [Double] = [], keptRewards: [Double] = []
        for entry in all {
            let prompt = prompts[entry.prompt]
            selection.candidates += entry.texts.count
            var eligible: [(text: String, reward: Double)] = []
            for (index, text) in entry.texts.enumerated() {
                guard let reward = entry.rewards[index] else { continue }
                allRewards.append(reward)
                if let correct = entry.correct[index] {
                    selection.checked += 1
                    guard correct else { continue }
                    selection.passed += 1
                }
                if let floor = settings.minReward, reward < floor { continue }
                eligible.append((text, reward))
            }
            // Best first; ties keep the sampling order.
            let chosen = eligible.enumerated().sorted { ($0.element.reward, -$0.offset) > ($1.element.reward, -$1.offset) }
                .prefix(settings.keepTop).map(\.element)
            for (rank, candidate) in chosen.enumerated() {
                keptRewards.append(candidate.reward)
                lines.append(try jsonLine([
                    "id": "\(prompt.id)-rs\(rank)", "images": try imagePaths(prompt, relativeTo: file),
                    "messages": (prompt.messages + [ChatMessage(role: .assistant, text: candidate.text)]).map(messageJSON),
                    "reward": candidate.reward,
                ]))
            }
        }
        selection.kept = keptRewards.count
        selection.meanRewardAll = mean(allRewards)
        selection.meanRewardKept = mean(keptRewards)
        if write { try AtomicFile.write(Data(lines.map { $0 + "\n" }.joined().utf8), to: file) }
        return selection
    }

    /// One pair per prompt: chosen = the best-rewarded candidate (among the correct ones where there
    /// is a reference answer), rejected = the worst-rewarded one, when their rewards differ by more
    /// than `pair_reward_gap`.
    ///
    /// With `anchors`, a prompt that gives no pair but whose best candidate passed the correctness
    /// check is written as that answer paired with itself (id `…-anchor`). Such a pair carries no
    /// preference and adds nothing to the DPO term; its answer is learned by the NLL term. Without
    /// anchors, the prompts the policy already answers right in every sample are never seen, and
    /// lowering a rejected token elsewhere can lower their answers too (Docs/training.md, "On a
    /// policy that is already right").
    static func writePairs(_ all: [PromptCandidates], prompts: [SamplingPrompt], settings: PostTrainingSettings, to file: URL,
                           write: Bool = true, anchors: Bool = false) throws -> (pairs: Int, anchors: Int) {
        var lines: [String] = []
        var anchorCount = 0
        for entry in all {
            let prompt = prompts[entry.prompt]
            let scored = entry.texts.indices.compactMap { index in entry.rewards[index].map { (index: index, reward: $0) } }
            let candidatesForChosen = scored.filter { entry.correct[$0.index] != false }
            guard let best = candidatesForChosen.max(by: { $0.reward < $1.reward }) else { continue }
            var rejected = best.index
            if let worst = scored.min(by: { $0.reward < $1.reward }), worst.index != best.index,
               best.reward - worst.reward > settings.pairRewardGap, entry.texts[best.index] != entry.texts[worst.index] {
                rejected = worst.index
            } else {
                guard anchors, entry.correct[best.index] == true else { continue }
                anchorCount += 1
            }
            lines.append(try jsonLine([
                "id": "\(prompt.id)-\(rejected == best.index ? "anchor" : "pair")", "images": try imagePaths(prompt, relativeTo: file),
                "prompt": prompt.messages.map(messageJSON),
                "chosen": [messageJSON(ChatMessage(role: .assistant, text: entry.texts[best.index]))],
                "rejected": [messageJSON(ChatMessage(role: .assistant, text: entry.texts[rejected]))],
            ]))
        }
        if write { try AtomicFile.write(Data(lines.map { $0 + "\n" }.joined().utf8), to: file) }
        return (lines.count - anchorCount, anchorCount)
    }

    static func imagePaths(_ prompt: SamplingPrompt, relativeTo file: URL) throws -> [String] {
        try prompt.images.map { source in
            guard case .file(let url) = source else {
                throw TrainingError("\(prompt.location): sampled prompts need image files (not \(source.name) inside a shard) to be written as a dataset")
            }
            return relativePath(of: url, from: file.deletingLastPathComponent())
        }
    }

    /// The path of `target` as seen from the folder `base` (`../../world/images/000001.png`).
    static func relativePath(of target: URL, from base: URL) -> String {
        let to = target.standardizedFileURL.resolvingSymlinksInPath().pathComponents
        let from = base.standardizedFileURL.resolvingSymlinksInPath().pathComponents
        var shared = 0
        while shared < min(to.count, from.count) && to[shared] == from[shared] { shared += 1 }
        let parts = Array(repeating: "..", count: from.count - shared) + to[shared...]
        return parts.joined(separator: "/")
    }

    static func messageJSON(_ message: ChatMessage) -> [String: Any] {
        ["role": message.role.rawValue, "content": message.parts.map { part -> [String: Any] in
            switch part {
            case .image: return ["type": "image"]
            case .text(let text): return ["type": "text", "text": text]
            }
        }]
    }

    static func jsonLine(_ object: [String: Any]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    }
}
