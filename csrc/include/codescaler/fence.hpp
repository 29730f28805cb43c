// Fence scanning: find fenced code blocks in an LLM response.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace codescaler {

// One fenced block; offsets are UTF-8 byte offsets into the scanned text.
struct Block {
  std::size_t tag_begin, tag_end;    // the optional language word after the opening fence
  std::size_t code_begin, code_end;  // the block body, fences and tag excluded
};

// Blocks matched exactly as the published CodeScaler recipe matches them: three backticks,
// an optional word (\w+, ASCII letters, digits, underscore and non-ASCII word characters),
// a newline, then the shortest run up to the next three backticks.
std::vector<Block> scan_codescaler(std::string_view text);

}  // namespace codescaler
