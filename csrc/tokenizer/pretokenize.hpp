// The pre-tokenizer regexes Hugging Face byte-level BPE tokenizers declare, as hand-written scanners that
// follow Oniguruma's leftmost, ordered-alternation semantics for exactly these patterns. Any other regex is
// refused when the tokenizer opens.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace codescaler::pretokenize {

enum class Pattern {
  gpt2,    // ByteLevel's built-in: 's|'t|... | ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  qwen2,   // Qwen2/Qwen3: (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
  cl100k,  // the same with \p{N}{1,3} (Llama 3, cl100k)
};

// The pattern whose regex source is exactly `regex`, if it is one of the above.
std::optional<Pattern> pattern_from_regex(std::string_view regex);
const char* pattern_regex(Pattern pattern);

// Appends to `pieces` the byte ranges an Isolated split of well-formed UTF-8 `text` by `pattern` gives
// (matches and the text between them, in order; these patterns leave no text between matches).
void split(Pattern pattern, std::string_view text, std::size_t offset,
           std::vector<std::pair<std::size_t, std::size_t>>& pieces);

}  // namespace codescaler::pretokenize
