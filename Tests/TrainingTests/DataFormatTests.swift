import Foundation
import Testing
import Tokenization
@testable import Training

/// The records of a dataset that parsed, failing the test on any parse issue.
private func records(_ dataset: Dataset) throws -> [DatasetRecord] {
    try (0 ..< dataset.count).map { try dataset.record(at: $0).get() }
}

private func issue(_ dataset: Dataset, _ index: Int) -> DataIssue? {
    if case .failure(let issue) = dataset.record(at: index) { issue } else { nil }
}

@Suite struct DataFormatTests {
    @Test func pairsJSONLinesGiveCaptionsWithImagesBesideTheFile() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("data/train.jsonl", """
            {"image": "img/a.png", "text": "A red square.", "id": "first"}

            {"image": "/abs/b.png", "text": "Two dots."}
            """)
        let dataset = try Dataset(path: file)
        #expect(dataset.format == .pairs)
        let parsed = try records(dataset)
        #expect(parsed.count == 2)
        #expect(parsed[0].id == "first" && parsed[1].id == "train:3")
        #expect(parsed[1].location == RecordLocation(file: file, line: 3))
        #expect(parsed[0].images == [.file(directory.url.appendingPathComponent("data/img/a.png"))])
        #expect(parsed[1].images == [.file(URL(fileURLWithPath: "/abs/b.png"))])
        guard case .caption(let text) = parsed[0].content else { Issue.record("not a caption"); return }
        #expect(text == "A red square.")
    }

    @Test func questionLinesKeepTheirAnswerAndOptionalType() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("qa.jsonl", """
            {"image": "a.png", "question": "What colour?", "answer": "red", "type": "color"}
            {"image": "a.png", "question": "How many?", "answer": "2"}
            """)
        let dataset = try Dataset(path: file)
        #expect(dataset.format == .questions)
        let parsed = try records(dataset)
        guard case .question(let prompt, let answer, let kind) = parsed[0].content,
              case .question(_, let answer2, let kind2) = parsed[1].content else { Issue.record("not questions"); return }
        #expect(prompt == "What colour?" && answer == "red" && kind == "color")
        #expect(answer2 == "2" && kind2 == nil)
    }

    @Test func llavaJSONPlacesImageMarkersAndNamesEachElementsLine() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("llava.json", """
            [
              {"id": "000000033471", "image": "coco/33471.jpg",
               "conversations": [
                 {"from": "human", "value": "<image>\\nWhat are the colors of the bus?"},
                 {"from": "gpt", "value": "White and red."},
                 {"from": "human", "value": "Where is it?"},
                 {"from": "gpt", "value": "On a street [near \\"a\\" {shop}]."}]},
              {"id": 7, "image": ["x.jpg", "y.jpg"],
               "conversations": [
                 {"from": "system", "value": "Be brief."},
                 {"from": "human", "value": "Compare <image> and <image> please"},
                 {"from": "gpt", "value": "Same."}]},
              {"id": "bad", "conversations": [{"from": "robot", "value": "hi"}]},
              {"id": "plain", "image": "p.jpg", "conversations": [{"from": "human", "value": "Describe."}, {"from": "gpt", "value": "A cat."}]}
            ]
            """)
        let dataset = try Dataset(path: file)
        #expect(dataset.format == .llava && dataset.count == 4)
        guard case .success(let first) = dataset.record(at: 0), case .conversation(let turns) = first.content else {
            Issue.record("element 0 did not parse"); return
        }
        #expect(first.id == "000000033471" && first.location.description == "\(file):2")
        #expect(turns.count == 4)
        #expect(turns[0] == ChatMessage(role: .user, parts: [.image, .text("What are the colors of the bus?")]))
        #expect(turns[3] == ChatMessage(role: .assistant, text: "On a street [near \"a\" {shop}]."))

        guard case .success(let second) = dataset.record(at: 1), case .conversation(let multi) = second.content else {
            Issue.record("element 1 did not parse"); return
        }
        #expect(second.id == "7" && second.images.count == 2 && second.location.place == "8")
        #expect(multi[0] == ChatMessage(role: .system, text: "Be brief."))
        #expect(multi[1].parts == [.text("Compare"), .image, .text("and"), .image, .text("please")])

        let bad = try #require(issue(dataset, 2))
        #expect(bad.cause == .malformedRecord && bad.field == "conversations[0].from")
        #expect(bad.description.hasPrefix("\(file):13: field \"conversations[0].from\""))

        // No marker: the image goes before the first human turn's text.
        guard case .success(let plain) = dataset.record(at: 3), case .conversation(let plainTurns) = plain.content else {
            Issue.record("element 3 did not parse"); return
        }
        #expect(plainTurns[0].parts == [.image, .text("Describe.")])
    }

    @Test func messagesJSONLinesAreMultiTurnAndMultiImage() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("sft.jsonl", """
            {"images": ["a.png", "b.png"], "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Which is red?"}]}, {"role": "assistant", "content": [{"type": "text", "text": "The first."}]}, {"role": "user", "content": "Sure?"}, {"role": "assistant", "content": "Yes."}]}
            {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
            """)
        let dataset = try Dataset(path: file)
        #expect(dataset.format == .messages)
        let parsed = try records(dataset)
        guard case .conversation(let turns) = parsed[0].content, case .conversation(let text) = parsed[1].content else {
            Issue.record("not conversations"); return
        }
        #expect(parsed[0].images.count == 2)
        #expect(turns == [ChatMessage(role: .user, parts: [.image, .image, .text("Which is red?")]),
                          ChatMessage(role: .assistant, text: "The first."),
                          ChatMessage(role: .user, text: "Sure?"), ChatMessage(role: .assistant, text: "Yes.")])
        #expect(parsed[1].images.isEmpty && text.count == 3 && text[0].role == .system)
    }

    @Test func preferenceLinesAreParsedAndValidated() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("pref.jsonl", """
            {"images": ["a.png"], "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}], "chosen": [{"role": "assistant", "content": "Red."}], "rejected": [{"role": "assistant", "content": "Blue."}]}
            {"images": ["a.png"], "prompt": "Colour?", "chosen": "Red.", "rejected": "Blue.", "edited": "Red!"}
            {"images": ["a.png", "b.png"], "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}], "chosen": "a", "rejected": "b"}
            {"images": [], "prompt": "Colour?", "chosen": "Red.", "rejected": "  "}
            """)
        let dataset = try Dataset(path: file)
        #expect(dataset.format == .preference)
        guard case .success(let first) = dataset.record(at: 0),
              case .preference(let prompt, let chosen, let rejected, let edited) = first.content else {
            Issue.record("line 1 did not parse"); return
        }
        #expect(prompt == [ChatMessage(role: .user, parts: [.image, .text("Colour?")])])
        #expect(chosen == [ChatMessage(role: .assistant, text: "Red.")] && rejected == [ChatMessage(role: .assistant, text: "Blue.")])
        #expect(edited == nil)
        guard case .success(let second) = dataset.record(at: 1),
              case .preference(let stringPrompt, _, _, let edited2) = second.content else {
            Issue.record("line 2 did not parse"); return
        }
        #expect(stringPrompt == [ChatMessage(role: .user, parts: [.image, .text("Colour?")])])
        #expect(edited2 == [ChatMessage(role: .assistant, text: "Red!")])
        let mismatch = try #require(issue(dataset, 2))
        #expect(mismatch.cause == .malformedRecord && mismatch.field == "prompt" && mismatch.location.place == "3")
        let empty = try #require(issue(dataset, 3))
        #expect(empty.cause == .emptyText && empty.field == "rejected" && empty.location.place == "4")
    }

    @Test func malformedLinesAreNamedByFileLineAndField() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("train.jsonl", """
            {"image": "a.png", "text": "fine"}
            {"image": "a.png", "text": "unterminated
            {"image": "a.png"}
            {"image": 3, "text": "x"}
            {"image": "a.png", "text": "   "}
            [1, 2]
            """)
        let dataset = try Dataset(path: file)
        #expect(dataset.count == 6 && dataset.parseIssues.count == 5)
        let expected: [(Int, SkipCause, String?)] = [(2, .malformedRecord, nil), (3, .malformedRecord, "text"),
                                                     (4, .malformedRecord, "image"), (5, .emptyText, "text"),
                                                     (6, .malformedRecord, nil)]
        for (index, (line, cause, field)) in expected.enumerated() {
            let found = dataset.parseIssues[index]
            #expect(found.location.description == "\(file):\(line)")
            #expect(found.cause == cause && found.field == field, "\(found)")
        }
        #expect(dataset.parseIssues[1].description == "\(file):3: field \"text\": missing")
        #expect(dataset.parseIssues[2].description == "\(file):4: field \"image\": expected a string, found a number")
    }

    @Test func anUnknownShapeOfRecordIsAnErrorNamingTheKeys() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("odd.jsonl", "{\"picture\": \"a.png\", \"caption\": \"x\"}\n")
        #expect { try Dataset(path: file) } throws: { error in
            "\(error)".contains("odd.jsonl:1") && "\(error)".contains("[\"caption\", \"picture\"]")
        }
        // Given explicitly, the format names the missing field instead (a pair's image is optional:
        // without one it is text-only).
        let dataset = try Dataset(path: file, format: .pairs)
        #expect(issue(dataset, 0)?.field == "text")
    }

    @Test func aTarWrittenHereIsReadBackAsWebdatasetSamples() throws {
        let directory = try TemporaryDirectory()
        let png = [UInt8](try pngBytes())
        try directory.write("shards/00000.tar", ustarArchive([
            ("000000.jpg", png), ("000000.txt", Array("A red square.\n".utf8)), ("000000.json", Array("{}".utf8)),
            ("000001.png", png), ("000001.txt", Array("Blue sky".utf8)),
            ("000002.txt", Array("no image".utf8)),
        ]))
        try directory.write("shards/00001.tar", ustarArchive([("sub/000003.jpeg", png), ("sub/000003.txt", Array("x".utf8))]))
        let dataset = try Dataset(path: directory.path("shards/{00000..00001}.tar"))
        #expect(dataset.format == .webdataset && dataset.count == 4)
        let first = try dataset.record(at: 0).get()
        #expect(first.id == "000000" && first.location.description == "00000.tar:000000.jpg")
        guard case .caption(let caption) = first.content, case .embedded(let name, let bytes) = first.images[0] else {
            Issue.record("not an embedded caption"); return
        }
        #expect(caption == "A red square." && name == "00000.tar:000000.jpg" && bytes == png)
        let missing = try #require(issue(dataset, 2))
        #expect(missing.cause == .malformedRecord && missing.description.contains("00000.tar:000002.txt"))
        #expect(try dataset.record(at: 3).get().id == "sub/000003")

        // The same shards as a directory, and as a single file.
        #expect(try Dataset(path: directory.path("shards")).count == 4)
        #expect(try Dataset(path: directory.path("shards/00001.tar")).count == 1)
    }

    @Test func aCorruptOrTruncatedShardKeepsTheMembersBeforeTheDamage() throws {
        let directory = try TemporaryDirectory()
        let png = [UInt8](try pngBytes())
        var archive = ustarArchive([("a.png", png), ("a.txt", Array("ok".utf8)), ("b.png", png), ("b.txt", Array("cut".utf8))])
        archive = archive.prefix(2048 + 512 + 10)   // inside b.png's data
        let file = try directory.write("cut.tar", archive)
        let dataset = try Dataset(path: file)
        #expect(try dataset.record(at: 0).get().id == "a")
        let damage = try #require(dataset.parseIssues.first)
        #expect(damage.cause == .malformedRecord && damage.location.description == "\(file):b.png" && damage.message.contains("truncated"))

        var corrupt = ustarArchive([("a.png", png), ("a.txt", Array("ok".utf8))])
        corrupt[1024 + 3] ^= 0xFF   // second header's name: checksum no longer matches
        let corruptFile = try directory.write("corrupt.tar", corrupt)
        let corruptSet = try Dataset(path: corruptFile)
        #expect(corruptSet.parseIssues.first?.message.contains("checksum") == true)
        #expect(corruptSet.count == 2)   // a.png alone (no caption) and the damage
    }

    @Test func shardRangesKeepTheirZeroPadding() throws {
        #expect(try WebDatasetIndex.expandShards("s/{00008..00011}.tar") == ["s/00008.tar", "s/00009.tar", "s/00010.tar", "s/00011.tar"])
        #expect(throws: DataError.self) { try WebDatasetIndex.expandShards("s/{3..1}.tar") }
    }

    @Test func aTarMadeByTheSystemTarIsRead() throws {
        let tar = URL(fileURLWithPath: "/usr/bin/tar")
        guard FileManager.default.isExecutableFile(atPath: tar.path) else { return }
        let directory = try TemporaryDirectory()
        try directory.writePNG("src/k1.png")
        try directory.write("src/k1.txt", "first")
        try directory.write("src/" + String(repeating: "long", count: 30) + ".txt", "long name")
        let process = Process()
        process.executableURL = tar
        process.arguments = ["-cf", directory.path("out.tar"), "-C", directory.path("src"), "k1.png", "k1.txt",
                             String(repeating: "long", count: 30) + ".txt"]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        let archive = try TarArchive(url: directory.url.appendingPathComponent("out.tar"), name: "out.tar")
        #expect(archive.issue == nil)
        #expect(archive.members.map(\.name) == ["k1.png", "k1.txt", String(repeating: "long", count: 30) + ".txt"])
        #expect(try archive.read(archive.members[1]) == Array("first".utf8))
    }
}
