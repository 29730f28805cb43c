// Hugging Face `tokenizer.json` byte-level BPE (the Qwen2/Qwen3 family, GPT-2, Llama 3) in plain C++:
// `encode` gives the ids Hugging Face `tokenizers` gives, token for token.
//
// What is reproduced: added tokens (special or not, lstrip/rstrip, normalized or not) split out before
// normalization, the NFC normalizer, Split pre-tokenizers with Qwen2's, cl100k's or GPT-2's regex
// (Isolated), ByteLevel, the BPE model (merges as pairs or "a b" strings, ignore_merges, unk_token), and
// the ByteLevel and TemplateProcessing post-processors for a single sequence. Anything else a
// tokenizer.json declares (another model type, normalizer, pre-tokenizer, regex, truncation, padding...)
// is refused at open with a message naming it, never approximated.
//
// No exceptions leave this API (std::bad_alloc included): every call returns a TokenizerStatus, so a
// C ABI can wrap it directly. A Tokenizer is immutable after open; encode is safe from many threads.
//
// Unicode: \p{L}, \p{N}, \s and NFC come from tables generated at build time from the building Python's
// unicodedata (see unicode_version()), with NFC held to the Unicode 9.0 data Hugging Face's normalizer
// uses. Code points assigned after the building Python's Unicode version can tokenize differently from
// Hugging Face's Oniguruma (measured by tests/test_native_tokenizer.py: 20 of them with Python 3.11).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codescaler/export.h"

namespace codescaler {

enum class TokenizerCode {
  ok,
  io_error,       // the file could not be read
  invalid_json,   // not JSON, or a field of the wrong type
  unsupported,    // valid tokenizer.json this implementation refuses (the message names what)
  invalid_utf8,   // encode input is not well-formed UTF-8 (the message gives the byte offset)
  out_of_memory,
  internal_error,  // any other exception the standard library raised inside (a bug if ever seen)
};

CODESCALER_API const char* tokenizer_code_name(TokenizerCode code);

struct TokenizerStatus {
  TokenizerCode code = TokenizerCode::ok;
  std::string message;
  bool ok() const { return code == TokenizerCode::ok; }
};

class Tokenizer {
 public:
  // Reads and checks `path`; on success `*out` holds the tokenizer.
  CODESCALER_API static TokenizerStatus open(const std::string& path, std::unique_ptr<Tokenizer>* out);
  // The same from the file's text; `origin` names it in messages.
  CODESCALER_API static TokenizerStatus from_json(std::string_view json, std::unique_ptr<Tokenizer>* out,
                                                  std::string_view origin = "tokenizer.json");

  CODESCALER_API ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `utf8` (replacing `*ids`), as `tokenizers.Tokenizer.encode(text, add_special_tokens)`
  // gives them. Empty text gives no ids (plus the post-processor's, if it adds any).
  CODESCALER_API TokenizerStatus encode(std::string_view utf8, std::vector<std::int32_t>* ids,
                                        bool add_special_tokens = true) const;
  // Cuts ids that encode gave (with `add_special_tokens` as passed there) to `max_length` on the right, as
  // Hugging Face's truncation does: the text's own ids are cut so the post-processor's special tokens
  // still fit. Ids already within max_length are left as they are.
  CODESCALER_API void truncate(std::vector<std::int32_t>* ids, std::size_t max_length, bool add_special_tokens = true) const;

  // encode over many texts on `threads` worker threads (0: hardware concurrency); (*ids)[i] and the
  // returned statuses are in input order.
  CODESCALER_API std::vector<TokenizerStatus> encode_batch(const std::vector<std::string_view>& texts,
                                                           std::vector<std::vector<std::int32_t>>* ids,
                                                           bool add_special_tokens = true, unsigned threads = 1) const;

  // The id of a token as tokenizer.json spells it (added tokens included), if it has one.
  CODESCALER_API std::optional<std::int32_t> token_to_id(std::string_view token) const;
  // One past the largest id encode can return (vocabulary, added tokens, post-processor tokens).
  CODESCALER_API std::size_t vocab_size() const;
  // The Unicode version of the built-in character tables.
  CODESCALER_API static const char* unicode_version();

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace codescaler
