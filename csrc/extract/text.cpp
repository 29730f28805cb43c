#include "text.hpp"

#include <algorithm>
#include <iterator>

namespace codescaler::text {
namespace {

struct CodePointRange {
  std::uint32_t lo, hi;
};

#include "codescaler_unicode_tables.inc"

template <std::size_t N>
bool in_ranges(const CodePointRange (&ranges)[N], std::uint32_t cp) {
  const auto* it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                    [](std::uint32_t v, const CodePointRange& r) { return v < r.lo; });
  return it != std::begin(ranges) && cp <= (it - 1)->hi;
}

}  // namespace

bool is_word(std::uint32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') || cp == '_';
  return cp != kInvalid && in_ranges(kWordRanges, cp);
}

bool is_space(std::uint32_t cp) {
  if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
  return cp != kInvalid && in_ranges(kSpaceRanges, cp);
}

bool is_id_start(std::uint32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') || cp == '_';
  return cp != kInvalid && in_ranges(kIdStartRanges, cp);
}

bool is_id_continue(std::uint32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') || cp == '_';
  return cp != kInvalid && in_ranges(kIdContinueRanges, cp);
}

const char* unicode_version() { return CODESCALER_UNICODE_VERSION; }

std::size_t code_points(std::string_view s, std::size_t byte_offset) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < byte_offset;) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
    } else {
      i += decode(s, i).length;
    }
    ++n;
  }
  return n;
}

}  // namespace codescaler::text
