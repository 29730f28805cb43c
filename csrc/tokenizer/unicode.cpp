#include "unicode.hpp"

#include <algorithm>
#include <vector>

namespace codescaler::unicode {
namespace {

struct CombiningClass {
  std::uint32_t cp;
  std::uint8_t ccc;
};
struct Decomposition {
  std::uint32_t cp, start, length;
};
struct Composition {
  std::uint32_t first, second, composite;
};

#include "codescaler_tokenizer_tables.inc"

static_assert(kFlagLetter == letter && kFlagNumber == number && kFlagSpace == space &&
              kFlagUnstable == unstable && kFlagDecomposes == decomposes);

// Hangul syllables compose and decompose by arithmetic (Unicode 3.12).
constexpr std::uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr std::uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                        kSCount = kLCount * kNCount;

std::uint8_t combining_class(std::uint32_t cp) {
  if (cp < 0x300) return 0;
  const auto* end = kCombiningClasses + std::size(kCombiningClasses);
  const auto* it = std::lower_bound(kCombiningClasses, end, cp,
                                    [](const CombiningClass& e, std::uint32_t c) { return e.cp < c; });
  return it != end && it->cp == cp ? it->ccc : 0;
}

void decompose(std::uint32_t cp, std::vector<std::uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const std::uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (flags(cp) & decomposes) {
    const auto* end = kDecompositions + std::size(kDecompositions);
    const auto* it = std::lower_bound(kDecompositions, end, cp,
                                      [](const Decomposition& e, std::uint32_t c) { return e.cp < c; });
    if (it != end && it->cp == cp) {
      out.insert(out.end(), kDecompositionPool + it->start, kDecompositionPool + it->start + it->length);
      return;
    }
  }
  out.push_back(cp);
}

// The primary composite of (first, second), or 0.
std::uint32_t compose(std::uint32_t first, std::uint32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase && second < kVBase + kVCount)
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount)
    return first + (second - kTBase);
  const auto* end = kCompositions + std::size(kCompositions);
  const auto* it = std::lower_bound(kCompositions, end, std::make_pair(first, second),
                                    [](const Composition& e, const std::pair<std::uint32_t, std::uint32_t>& k) {
                                      return e.first < k.first || (e.first == k.first && e.second < k.second);
                                    });
  return it != end && it->first == first && it->second == second ? it->composite : 0;
}

}  // namespace

std::uint8_t flags(std::uint32_t cp) {
  if (cp >= 0x110000) return 0;
  return kFlagBlocks[static_cast<std::size_t>(kFlagIndex[cp >> 8]) * 256 + (cp & 0xFF)];
}

const char* version() { return CODESCALER_TOKENIZER_UNICODE_VERSION; }

std::size_t first_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char b0 = s[i];
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3;
      if (b0 == 0xE0) lo = 0xA0;       // overlong
      else if (b0 == 0xED) hi = 0x9F;  // surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4;
      if (b0 == 0xF0) lo = 0x90;       // overlong
      else if (b0 == 0xF4) hi = 0x8F;  // past U+10FFFF
    } else {
      return i;
    }
    if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if ((s[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return std::string_view::npos;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool nfc_quick_yes(std::string_view text) {
  const char* s = text.data();
  for (std::size_t i = 0; i < text.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    std::uint32_t cp;
    i += decode(s, i, cp);
    if (flags(cp) & unstable) return false;
  }
  return true;
}

void nfc(std::string_view text, std::string& out) {
  if (nfc_quick_yes(text)) {
    out.append(text);
    return;
  }
  // Full canonical decomposition, canonical ordering, then canonical composition (UAX #15).
  std::vector<std::uint32_t> cps;
  cps.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t cp;
    i += decode(text.data(), i, cp);
    decompose(cp, cps);
  }
  std::vector<std::uint8_t> ccc(cps.size());
  for (std::size_t i = 0; i < cps.size(); ++i) ccc[i] = combining_class(cps[i]);
  for (std::size_t i = 0; i < cps.size();) {
    if (ccc[i] == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < cps.size() && ccc[j] != 0) ++j;
    if (j - i > 1) {
      std::vector<std::pair<std::uint8_t, std::uint32_t>> run;
      for (std::size_t k = i; k < j; ++k) run.emplace_back(ccc[k], cps[k]);
      std::stable_sort(run.begin(), run.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      for (std::size_t k = i; k < j; ++k) {
        ccc[k] = run[k - i].first;
        cps[k] = run[k - i].second;
      }
    }
    i = j;
  }
  if (!cps.empty()) {
    std::size_t starter = 0, write = 1;
    int last_class = ccc[0] == 0 ? 0 : 256;  // a leading non-starter composes with nothing
    for (std::size_t read = 1; read < cps.size(); ++read) {
      const std::uint32_t ch = cps[read];
      const int ch_class = ccc[read];
      const std::uint32_t composite = last_class == 256 ? 0 : compose(cps[starter], ch);
      if (composite && (last_class < ch_class || last_class == 0)) {
        cps[starter] = composite;
        continue;
      }
      if (ch_class == 0) {
        starter = write;
        last_class = 0;
      } else {
        last_class = ch_class;
      }
      cps[write] = ch;
      ccc[write] = static_cast<std::uint8_t>(ch_class);
      ++write;
    }
    cps.resize(write);
  }
  for (std::uint32_t cp : cps) append_utf8(out, cp);
}

}  // namespace codescaler::unicode
