// libFuzzer target over codescaler::Tokenizer. The first byte picks a mode:
//   even: encode the rest with a fixed tokenizer (a small byte-level BPE with NFC, the Qwen2 regex or
//         GPT-2's, added tokens with lstrip/rstrip) and check every id is in range and that well-formed
//         input encodes, ill-formed input ends as invalid_utf8;
//   odd:  open the rest as a tokenizer.json, and when it opens, encode a few strings with it.
// Nothing may crash, hang, leak or trip a sanitizer. Build and run (clang with libFuzzer; Debian:
// apt-get install clang libclang-rt-dev), as scripts/fuzz_extract.sh does for the extractor:
//   san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
//   cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
//     -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_FLAGS="$san -fsanitize=fuzzer-no-link" \
//     -DCMAKE_CXX_FLAGS="$san -fsanitize=fuzzer-no-link" -DCMAKE_EXE_LINKER_FLAGS="$san" -DCODESCALER_BUILD_FUZZER=ON
//   cmake --build build/fuzz --target codescaler_fuzz_tokenizer
//   build/fuzz/codescaler_fuzz_tokenizer CORPUS_DIR -max_total_time=600 -max_len=65536 -timeout=10
#include <codescaler/tokenizer.hpp>

#include "utf8_reference.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace codescaler;

namespace {

using codescaler_fuzz::well_formed_utf8;

std::string tokenizer_json(bool gpt2) {
  const std::string split =
      gpt2 ? std::string()
           : std::string(R"({"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},)");
  // Every byte is in the vocabulary (as its byte-level character), plus a few merges.
  std::string vocab, comma;
  int id = 0, n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const std::uint32_t cp = printable ? static_cast<std::uint32_t>(b) : 256u + static_cast<std::uint32_t>(n++);
    std::string ch;
    if (cp < 0x80) {
      if (cp == '"' || cp == '\\') ch += '\\';
      ch += static_cast<char>(cp);
    } else {
      ch += static_cast<char>(0xC0 | (cp >> 6));
      ch += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab += comma + "\"" + ch + "\": " + std::to_string(id++);
    comma = ", ";
  }
  vocab += R"(, "Ġt": 256, "he": 257, "Ġthe": 258, "ĠĠ": 259, "ĊĊ": 260, "in": 261, "Ġin": 262)";
  return R"({"added_tokens": [
    {"id": 300, "content": "<|im_start|>", "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 301, "content": "<|im_end|>", "lstrip": true, "rstrip": true, "normalized": false, "special": true},
    {"id": 302, "content": "caf\u00e9", "lstrip": false, "rstrip": false, "normalized": true, "special": false}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [)" + split +
         R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": )" + (gpt2 ? "true" : "false") + R"(}]},
    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|im_start|>"}},
      {"Sequence": {"id": "A"}}], "special_tokens": {"<|im_start|>": {"ids": [300]}}},
    "model": {"type": "BPE", "ignore_merges": true, "vocab": {)" + vocab + R"(},
      "merges": [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["Ġ", "Ġ"], ["Ċ", "Ċ"], ["i", "n"], ["Ġ", "in"]]}})";
}

const Tokenizer& fixed(bool gpt2) {
  static std::unique_ptr<Tokenizer> tokenizers[2];
  auto& t = tokenizers[gpt2 ? 1 : 0];
  if (!t) {
    const TokenizerStatus s = Tokenizer::from_json(tokenizer_json(gpt2), &t, "fuzz.json");
    if (!s.ok()) {
      std::fprintf(stderr, "fixed tokenizer does not open: %s\n", s.message.c_str());
      std::abort();
    }
  }
  return *t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<std::int32_t> ids;
  if (mode % 2 == 0) {
    const Tokenizer& t = fixed(mode & 2);
    const TokenizerStatus s = t.encode(rest, &ids, mode & 4);
    const bool valid = well_formed_utf8(rest);
    if (s.ok() != valid) std::abort();
    if (!s.ok() && (s.code != TokenizerCode::invalid_utf8 || !ids.empty())) std::abort();
    for (std::int32_t id : ids)
      if (id < 0 || static_cast<std::size_t>(id) >= t.vocab_size()) std::abort();
    if (valid && !rest.empty() && ids.empty()) std::abort();  // every byte is in this vocabulary
    return 0;
  }
  std::unique_ptr<Tokenizer> t;
  const TokenizerStatus s = Tokenizer::from_json(rest, &t, "fuzz.json");
  if (s.ok() != static_cast<bool>(t) || (!s.ok() && s.message.empty())) std::abort();
  if (t) {
    for (std::string_view text : {std::string_view("hello world <|im_end|> caf\xC3\xA9"), std::string_view(""),
                                  std::string_view("\xE2\x82"), rest.substr(0, 64)}) {
      const TokenizerStatus e = t->encode(text, &ids);
      for (std::int32_t id : ids)
        if (id < 0 || static_cast<std::size_t>(id) >= t->vocab_size()) std::abort();
      (void)e;
    }
  }
  return 0;
}
