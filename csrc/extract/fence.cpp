#include "codescaler/fence.hpp"

namespace codescaler {
namespace {

bool is_ascii_word(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

}  // namespace

std::vector<Block> scan_codescaler(std::string_view text) {
  std::vector<Block> blocks;
  const std::size_t n = text.size();
  std::size_t pos = 0;
  while (pos + 3 <= n) {
    const std::size_t open = text.find("```", pos);
    if (open == std::string_view::npos) break;
    std::size_t p = open + 3;
    const std::size_t tag_begin = p;
    while (p < n && is_ascii_word(static_cast<unsigned char>(text[p]))) ++p;
    const std::size_t tag_end = p;
    if (p >= n || text[p] != '\n') {
      pos = open + 1;
      continue;
    }
    const std::size_t code_begin = p + 1;
    const std::size_t close = text.find("```", code_begin);
    if (close == std::string_view::npos) {
      pos = open + 1;
      continue;
    }
    blocks.push_back(Block{tag_begin, tag_end, code_begin, close});
    pos = close + 3;
  }
  return blocks;
}

}  // namespace codescaler
