// Writing a trained vocabulary as Hugging Face files with the layout of Llama 3.2's: a byte-level
// BPE model with `ignore_merges`, the Llama 3 Split regex then ByteLevel, a post-processor that
// adds `<|begin_of_text|>`, and the ByteLevel decoder.

extension TrainedBPE {
    /// `tokenizer.json`, loadable by Hugging Face `tokenizers` and by ``Tokenizer``. Vocabulary
    /// and added tokens are written in id order and merges as `["left", "right"]` pairs, so the
    /// same vocabulary always gives the same bytes.
    public func tokenizerJSON() -> String {
        let spellings = tokens.map { ByteLevelAlphabet.spelling(of: $0) }
        var out = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [\n"
        out += specialTokens.map { token in
            "    {\"id\": \(token.id), \"content\": \(JSONText.quoted(token.text)), \"single_word\": false, \"lstrip\": false, "
                + "\"rstrip\": false, \"normalized\": false, \"special\": true}"
        }.joined(separator: ",\n")
        out += "\n  ],\n  \"normalizer\": null,\n"
        out += """
              "pre_tokenizer": {"type": "Sequence", "pretokenizers": [\
            {"type": "Split", "pattern": {"Regex": \(JSONText.quoted(Llama3PreTokenizer.pattern))}, "behavior": "Isolated", "invert": false}, \
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},

            """
        let bos = JSONText.quoted(BPETrainer.llama3SpecialTokens[0])
        let bosID = specialTokenID(BPETrainer.llama3SpecialTokens[0])!
        out += """
              "post_processor": {"type": "Sequence", "processors": [\
            {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}, \
            {"type": "TemplateProcessing", \
            "single": [{"SpecialToken": {"id": \(bos), "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], \
            "pair": [{"SpecialToken": {"id": \(bos), "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, \
            {"SpecialToken": {"id": \(bos), "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}], \
            "special_tokens": {\(bos): {"id": \(bos), "ids": [\(bosID)], "tokens": [\(bos)]}}}]},
              "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
              "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, \
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": true,
                "vocab": {

            """
        out += spellings.enumerated().map { "      \(JSONText.quoted($0.element)): \($0.offset)" }.joined(separator: ",\n")
        out += "\n    },\n    \"merges\": [\n"
        out += merges.map { "      [\(JSONText.quoted(spellings[$0.left])), \(JSONText.quoted(spellings[$0.right]))]" }
            .joined(separator: ",\n")
        out += "\n    ]\n  }\n}\n"
        return out
    }

    /// `tokenizer_config.json` for transformers' `AutoTokenizer`: the special tokens, BOS
    /// `<|begin_of_text|>`, EOS `<|end_of_text|>` (a base model's), and the Llama 3 chat template.
    /// `clean_up_tokenization_spaces` is false so decoding gives back the exact text.
    public func tokenizerConfigJSON() -> String {
        var out = "{\n  \"added_tokens_decoder\": {\n"
        out += specialTokens.map { token in
            "    \"\(token.id)\": {\"content\": \(JSONText.quoted(token.text)), \"lstrip\": false, \"normalized\": false, "
                + "\"rstrip\": false, \"single_word\": false, \"special\": true}"
        }.joined(separator: ",\n")
        out += "\n  },\n"
        out += "  \"bos_token\": \"<|begin_of_text|>\",\n"
        out += "  \"chat_template\": \(JSONText.quoted(Self.chatTemplate)),\n"
        out += "  \"clean_up_tokenization_spaces\": false,\n"
        out += "  \"eos_token\": \"<|end_of_text|>\",\n"
        out += "  \"model_input_names\": [\"input_ids\", \"attention_mask\"],\n"
        out += "  \"model_max_length\": 131072,\n"
        out += "  \"tokenizer_class\": \"PreTrainedTokenizerFast\"\n}\n"
        return out
    }

    /// Llama 3's chat template (the 8B-Instruct one: headers, trimmed content, `<|eot_id|>`).
    static let chatTemplate = "{% set loop_messages = messages %}{% for message in loop_messages %}"
        + "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' %}"
        + "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
}

/// JSON string literals for the writer.
enum JSONText {
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
