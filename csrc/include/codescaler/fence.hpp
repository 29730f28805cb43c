// Fence scanning: find fenced code blocks in an LLM response. Offsets are UTF-8 byte offsets.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "codescaler/export.h"

namespace codescaler {

// One fenced block.
struct Block {
  std::size_t tag_begin, tag_end;    // the language word after the opening fence (empty if none)
  std::size_t code_begin, code_end;  // the block body, fences and tag excluded
  bool closed = true;                // false when the response ended before a closing fence
};

// Blocks exactly as the published CodeScaler recipe finds them: Python's
// re.findall(r"```(\w+)?\n(.*?)```", text, re.DOTALL), with \w as Python's str.isalnum() plus "_".
// Bytes that are not valid UTF-8 count as one non-word, non-space character each.
CODESCALER_API std::vector<Block> scan_codescaler(std::string_view text);

// Blocks as a Markdown reader would see them, for the other policies: a fence line of three or more
// backticks or tildes (any indentation), an info string whose first word is the tag ("c++", "python3",
// ...), LF or CRLF line ends, closed by a line of the same character at least as long; a block still open
// at the end of the text runs to the end (closed = false).
CODESCALER_API std::vector<Block> scan_tolerant(std::string_view text);

}  // namespace codescaler
