#include "codescaler/extract.hpp"

#include <algorithm>
#include <atomic>
#include <thread>
#include <tuple>

#include "text.hpp"

namespace codescaler {
namespace {

// The tag selects the block for policies last and best: untagged blocks count as the requested language.
bool tag_matches(std::string_view text, const Block& b, Language language) {
  if (b.tag_begin == b.tag_end) return true;
  const auto tagged = language_from_tag(text.substr(b.tag_begin, b.tag_end - b.tag_begin));
  return tagged && *tagged == language;
}

Extraction selected(std::string_view text, const Block& b, std::uint32_t n_blocks) {
  Extraction e;
  e.n_blocks = n_blocks;
  e.tag_begin = b.tag_begin;
  e.tag_end = b.tag_end;
  std::tie(e.code_begin, e.code_end) = strip_range(text, b.code_begin, b.code_end);
  e.status = e.code_begin == e.code_end ? Status::empty_block : Status::ok;
  return e;
}

// Checks the selected code: its size against kMaxCodeBytes (whether or not options.validate: Python callers
// leave the syntax to CPython but not the limit), then its syntax, spending from `budget` (the steps left
// for this response).
void validate(std::string_view text, Extraction& e, const Options& options, SyntaxChecker& checker,
              std::uint64_t& budget) {
  if (e.status != Status::ok) return;
  if (e.code_end - e.code_begin > kMaxCodeBytes) {
    e.status = Status::code_too_long;
    return;
  }
  if (!options.validate) return;
  e.syntax = checker.check(e.code(text), options.language, budget);
  budget -= std::min(budget, e.syntax.steps);
  if (e.syntax.timed_out) e.status = Status::timeout;
  else if (!e.syntax.valid) e.status = Status::syntax_error;
}

}  // namespace

std::optional<Policy> policy_from_name(std::string_view name) {
  if (name == "codescaler") return Policy::codescaler;
  if (name == "last") return Policy::last;
  if (name == "best") return Policy::best;
  return std::nullopt;
}

const char* status_name(Status status) {
  switch (status) {
    case Status::ok: return "ok";
    case Status::no_block: return "no_block";
    case Status::multiple_blocks: return "multiple_blocks";
    case Status::empty_block: return "empty_block";
    case Status::syntax_error: return "syntax_error";
    case Status::timeout: return "timeout";
    case Status::code_too_long: return "code_too_long";
  }
  return "?";
}

std::pair<std::size_t, std::size_t> strip_range(std::string_view text, std::size_t begin, std::size_t end) {
  while (begin < end) {
    const text::CodePoint cp = text::decode(text.substr(0, end), begin);
    if (!text::is_space(cp.value)) break;
    begin += cp.length;
  }
  while (end > begin) {
    const text::CodePoint cp = text::decode_before(text, begin, end);
    if (!text::is_space(cp.value)) break;
    end -= cp.length;
  }
  return {begin, end};
}

Extraction extract(std::string_view text, const Options& options, SyntaxChecker& checker) {
  std::uint64_t budget = options.parse_budget_steps;
  if (options.policy == Policy::codescaler) {
    const std::vector<Block> blocks = scan_codescaler(text);
    Extraction e;
    e.n_blocks = static_cast<std::uint32_t>(blocks.size());
    if (blocks.empty()) return e;
    if (blocks.size() > 1) {
      e.status = Status::multiple_blocks;
      return e;
    }
    e = selected(text, blocks[0], 1);
    validate(text, e, options, checker, budget);
    return e;
  }

  const std::vector<Block> blocks = scan_tolerant(text);
  const auto n_blocks = static_cast<std::uint32_t>(blocks.size());
  Extraction none;
  none.n_blocks = n_blocks;
  if (options.policy == Policy::last) {
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
      if (!tag_matches(text, *it, options.language)) continue;
      Extraction e = selected(text, *it, n_blocks);
      validate(text, e, options, checker, budget);
      return e;
    }
    return none;
  }

  // best: candidates longest first (later first among equals); the first that parses cleanly wins. If
  // none does, report the longest candidate with its error, so the caller sees why.
  std::vector<Extraction> candidates;
  for (const Block& b : blocks) {
    if (!tag_matches(text, b, options.language)) continue;
    Extraction e = selected(text, b, n_blocks);
    if (e.status == Status::ok) candidates.push_back(e);
  }
  if (candidates.empty()) {
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it)
      if (tag_matches(text, *it, options.language)) return selected(text, *it, n_blocks);  // empty_block
    return none;
  }
  std::sort(candidates.begin(), candidates.end(), [](const Extraction& a, const Extraction& b) {
    const std::size_t la = a.code_end - a.code_begin, lb = b.code_end - b.code_begin;
    return la != lb ? la > lb : a.code_begin > b.code_begin;
  });
  // A candidate over kMaxCodeBytes is passed over like one that does not parse (without validation too).
  Extraction first_checked = candidates.front();
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    Extraction e = candidates[i];
    validate(text, e, options, checker, budget);
    if (e.status == Status::ok || e.status == Status::timeout) return e;
    if (i == 0) first_checked = e;
  }
  return first_checked;
}

std::vector<Extraction> extract_batch(const std::vector<std::string_view>& texts, const Options& options,
                                      unsigned threads) {
  std::vector<Extraction> results(texts.size());
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, texts.size()));
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    SyntaxChecker checker;
    // Small chunks keep the threads balanced when a few responses are much larger than the rest.
    constexpr std::size_t kChunk = 16;
    for (std::size_t begin; (begin = next.fetch_add(kChunk)) < texts.size();) {
      const std::size_t end = std::min(begin + kChunk, texts.size());
      for (std::size_t i = begin; i < end; ++i) results[i] = extract(texts[i], options, checker);
    }
  };
  if (threads <= 1) {
    work();
    return results;
  }
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return results;
}

}  // namespace codescaler
