// libFuzzer target over the C++ entry point: every policy and language on arbitrary bytes must end in a
// status, with offsets inside the input, never a crash, hang or sanitizer report.
#include <codescaler/extract.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace codescaler;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static SyntaxChecker checker;
  // The first byte picks the policy and language, the rest is the response.
  const std::uint8_t selector = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  Options options;
  options.policy = static_cast<Policy>(selector % 3);
  options.language = static_cast<Language>((selector / 3) % 6);
  options.parse_budget_steps = 2'000'000;
  const Extraction e = extract(text, options, checker);
  if (e.code_begin > e.code_end || e.code_end > text.size() || e.tag_begin > e.tag_end ||
      e.tag_end > text.size())
    std::abort();
  if (options.policy == Policy::codescaler) {
    const auto blocks = scan_codescaler(text);
    if (e.n_blocks != blocks.size()) std::abort();
  }
  const auto [b, end] = strip_range(text, 0, text.size());
  if (b > end || end > text.size()) std::abort();
  return 0;
}
