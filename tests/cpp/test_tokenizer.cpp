// C++ API tests for codescaler::Tokenizer, run by ctest without Python: a small byte-level BPE written
// here (merges, added tokens, NFC, the Qwen2 regex, TemplateProcessing), refusals at open, bad input.
// Token-for-token parity with Hugging Face on the real Qwen vocabulary is tests/test_native_tokenizer.py;
// set CODESCALER_TOKENIZER_JSON to a tokenizer.json to also check a few known Qwen encodings here.
#include "expect.hpp"
#include <codescaler/tokenizer.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace codescaler;

namespace {

using codescaler_test::failures;

using Ids = std::vector<std::int32_t>;

// Byte-level alphabet: printable ASCII stands for itself, space is "Ġ" (U+0120), "\n" is "Ċ" (U+010A).
// Vocab: the single bytes used below, then merges "h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", ...
const char* kVocab = R"({
  "a": 0, "b": 1, "d": 2, "e": 3, "h": 4, "l": 5, "o": 6, "r": 7, "w": 8, "1": 9, "2": 10, "Ġ": 11,
  "Ċ": 12, "!": 13, "'": 14, "s": 15, "Ã": 16, "©": 17, "c": 18, "f": 19,
  "he": 20, "ll": 21, "hell": 22, "hello": 23, "Ġw": 24, "Ġwo": 25, "Ġwor": 26, "Ġworl": 27,
  "Ġworld": 28, "'s": 29, "Ã©": 30, "ĠĠ": 31, "ĊĊ": 32
})";
const char* kMerges = R"([["h","e"],["l","l"],["he","ll"],["hell","o"],["Ġ","w"],["Ġw","o"],["Ġwo","r"],
  ["Ġwor","l"],["Ġworl","d"],["'","s"],["Ã","©"],["Ġ","Ġ"],["Ċ","Ċ"]])";

// Qwen2's pre-tokenizer regex, JSON-escaped.
const char* kQwenRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)";

std::string tokenizer_json(const std::string& normalizer = R"({"type": "NFC"})",
                           const std::string& regex = kQwenRegex,
                           const std::string& post = "null", const std::string& model_type = "BPE") {
  return std::string(R"({"version": "1.0", "truncation": null, "padding": null,
    "added_tokens": [
      {"id": 100, "content": "<|im_start|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
      {"id": 101, "content": "<|im_end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
      {"id": 102, "content": "<|im", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
    "normalizer": )") + normalizer + R"(,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": ")" + regex + R"("}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
    "post_processor": )" + post + R"(,
    "decoder": {"type": "ByteLevel"},
    "model": {"type": ")" + model_type + R"(", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
      "vocab": )" + kVocab + R"(, "merges": )" + kMerges + "}}";
}

std::unique_ptr<Tokenizer> open_text(const std::string& json, TokenizerStatus* status = nullptr) {
  std::unique_ptr<Tokenizer> t;
  TokenizerStatus s = Tokenizer::from_json(json, &t, "test.json");
  if (status) *status = s;
  else if (!s.ok()) std::fprintf(stderr, "open failed: %s\n", s.message.c_str());
  return t;
}

Ids encode(const Tokenizer& t, const std::string& text, bool add_special_tokens = true) {
  Ids ids;
  const TokenizerStatus s = t.encode(text, &ids, add_special_tokens);
  EXPECT(s.ok());
  return ids;
}

void test_merges_and_pre_tokenizer() {
  auto t = open_text(tokenizer_json());
  EXPECT(t);
  if (!t) return;
  EXPECT(encode(*t, "hello world") == (Ids{23, 28}));
  EXPECT(encode(*t, "hello") == (Ids{23}));
  EXPECT(encode(*t, "he's") == (Ids{20, 29}));       // contraction split off, then merged
  EXPECT(encode(*t, "he'S") == (Ids{20, 14}));       // 'S matches, but "S" is not in this vocab: dropped
  EXPECT(encode(*t, "12") == (Ids{9, 10}));          // \p{N} one digit at a time
  EXPECT(encode(*t, "a\n\nb") == (Ids{0, 32, 1}));   // \s*[\r\n]+
  EXPECT(encode(*t, "a   b") == (Ids{0, 31, 11, 1}));  // \s+(?!\S) leaves the last space to " b"
  EXPECT(encode(*t, "").empty());
  EXPECT(t->vocab_size() == 103);
  EXPECT(t->token_to_id("Ġworld") == 28);
  EXPECT(t->token_to_id("<|im_end|>") == 101);
  EXPECT(!t->token_to_id("zzz"));
}

void test_nfc() {
  auto t = open_text(tokenizer_json());
  auto raw = open_text(tokenizer_json("null"));
  if (!t || !raw) return;
  const std::string composed = "\xC3\xA9", decomposed = "e\xCC\x81";  // é, e + U+0301
  EXPECT(encode(*t, decomposed) == (Ids{30}));
  EXPECT(encode(*t, composed) == (Ids{30}));
  EXPECT(encode(*raw, decomposed) != (Ids{30}));  // no normalizer: the combining mark stays
}

void test_added_tokens() {
  auto t = open_text(tokenizer_json());
  if (!t) return;
  // Leftmost-longest: "<|im_start|>" wins over its prefix "<|im".
  EXPECT(encode(*t, "<|im_start|>hello<|im_end|>") == (Ids{100, 23, 101}));
  EXPECT(encode(*t, "<|imhello") == (Ids{102, 23}));
  EXPECT(encode(*t, "<|im_start|><|im_start|>") == (Ids{100, 100}));
}

void test_template_processing() {
  const std::string post = R"({"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
               {"SpecialToken": {"id": "<|im_end|>", "type_id": 0}}],
    "pair": [], "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [100], "tokens": ["<|im_start|>"]},
                                   "<|im_end|>": {"id": "<|im_end|>", "ids": [101], "tokens": ["<|im_end|>"]}}})";
  auto u = open_text(tokenizer_json(R"({"type": "NFC"})", kQwenRegex, post));
  if (!u) return;
  EXPECT(encode(*u, "hello") == (Ids{100, 23, 101}));
  EXPECT(encode(*u, "hello", false) == (Ids{23}));
  EXPECT(encode(*u, "") == (Ids{100, 101}));
  // Right truncation as Hugging Face's: the text's ids are cut, the template's special tokens kept.
  Ids ids = encode(*u, "hello hello hello");
  const Ids whole = ids;
  u->truncate(&ids, ids.size());
  EXPECT(ids == whole);
  u->truncate(&ids, 3);
  EXPECT(ids.size() == 3 && ids.front() == 100 && ids[1] == whole[1] && ids.back() == 101);
  u->truncate(&ids, 1);
  EXPECT(ids == (Ids{100, 101}));  // too short for the special tokens: they stay, as in Hugging Face
  Ids plain = encode(*u, "hello hello hello", false);
  u->truncate(&plain, 2, false);
  EXPECT(plain.size() == 2);
}

void test_refused_at_open() {
  struct Case {
    std::string json, needle;
    TokenizerCode code;
  };
  const std::vector<Case> cases = {
      {tokenizer_json(R"({"type": "NFKC"})"), "normalizer type 'NFKC' is not supported", TokenizerCode::unsupported},
      {tokenizer_json("null", R"(\\s+)"), R"(pre_tokenizer.pretokenizers[0].pattern.Regex '\s+' is not supported)",
       TokenizerCode::unsupported},
      {tokenizer_json("null", kQwenRegex, "null", "WordPiece"), "model type 'WordPiece' is not supported",
       TokenizerCode::unsupported},
      {tokenizer_json("null", kQwenRegex, R"({"type": "RobertaProcessing"})"),
       "post_processor type 'RobertaProcessing' is not supported", TokenizerCode::unsupported},
      {"{\"model\": [1, 2", "line 1, column 16", TokenizerCode::invalid_json},
      {"", "unexpected end of input", TokenizerCode::invalid_json},
      {std::string(100000, '['), "nesting too deep", TokenizerCode::invalid_json},
      {"{\"model\": {\"type\": \"BPE\"}}", "has no ByteLevel step", TokenizerCode::unsupported},
  };
  for (const Case& c : cases) {
    TokenizerStatus status;
    auto t = open_text(c.json, &status);
    EXPECT(!t);
    EXPECT(status.code == c.code);
    EXPECT(status.message.find(c.needle) != std::string::npos);
    if (status.message.find(c.needle) == std::string::npos)
      std::fprintf(stderr, "  message was: %s\n  expected: %s\n", status.message.c_str(), c.needle.c_str());
  }
  std::unique_ptr<Tokenizer> t;
  const TokenizerStatus missing = Tokenizer::open("/nonexistent/tokenizer.json", &t);
  EXPECT(missing.code == TokenizerCode::io_error && !t);
  EXPECT(missing.message.find("/nonexistent/tokenizer.json") != std::string::npos);
}

void test_bad_input() {
  auto t = open_text(tokenizer_json());
  if (!t) return;
  Ids ids{1, 2, 3};
  for (const std::string bad : {std::string("a\xFF"), std::string("\xC0\xAF"), std::string("\xED\xA0\x80"),
                                std::string("\xF4\x90\x80\x80"), std::string("ab\xE2\x82")}) {
    const TokenizerStatus s = t->encode(bad, &ids);
    EXPECT(s.code == TokenizerCode::invalid_utf8);
    EXPECT(ids.empty());
    EXPECT(s.message.find("invalid UTF-8 at byte") != std::string::npos);
  }
  EXPECT(t->encode(std::string("a\0b", 3), &ids).ok() && ids.size() == 2);  // NUL has no vocab entry here

  // 10 MB in one piece (a whitespace run is one pre-token) and in many: linear, no crash.
  const std::string spaces(10 * 1024 * 1024, ' ');
  const auto start = std::chrono::steady_clock::now();
  EXPECT(t->encode(spaces, &ids).ok());
  EXPECT(ids.size() == spaces.size() / 2);
  std::string words;
  while (words.size() < 10 * 1024 * 1024) words += "hello world\n";
  EXPECT(t->encode(words, &ids).ok());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT(seconds < 20.0);

  const std::vector<std::string_view> batch = {"hello", "a\xFF", "", "hello world"};
  std::vector<Ids> out;
  const auto statuses = t->encode_batch(batch, &out, true, 3);
  EXPECT(statuses.size() == 4 && out.size() == 4);
  EXPECT(statuses[0].ok() && out[0] == (Ids{23}));
  EXPECT(statuses[1].code == TokenizerCode::invalid_utf8);
  EXPECT(statuses[2].ok() && out[2].empty());
  EXPECT(statuses[3].ok() && out[3] == (Ids{23, 28}));
}

// Known Qwen encodings (ids from Hugging Face tokenizers on the offline Qwen vocabulary).
void test_real_qwen() {
  const char* path = std::getenv("CODESCALER_TOKENIZER_JSON");
  if (!path) {
    std::printf("CODESCALER_TOKENIZER_JSON not set: skipping the real-vocabulary check\n");
    return;
  }
  std::unique_ptr<Tokenizer> t;
  const TokenizerStatus s = Tokenizer::open(path, &t);
  EXPECT(s.ok());
  if (!t) return;
  EXPECT(encode(*t, "<|im_start|>user\nhi<|im_end|>\n") == (Ids{151644, 872, 198, 6023, 151645, 198}));
  EXPECT(t->token_to_id("<think>") == 151667);
}

}  // namespace

int main() {
  test_merges_and_pre_tokenizer();
  test_nfc();
  test_added_tokens();
  test_template_processing();
  test_refused_at_open();
  test_bad_input();
  test_real_qwen();
  if (failures) {
    std::fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  std::printf("tokenizer tests passed\n");
  return 0;
}
