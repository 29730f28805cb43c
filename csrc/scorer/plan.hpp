// The forward-pass planner of python/codescaler/plan.py (`plan(..., packed=True)`), in plain C++, so the
// C++ scorer runs exactly the passes Python runs and reads every score at the same position: identical
// (sequence, boundary) pairs scored once, every sequence split at its boundary (the tokens that render its
// question), sequences with the same prefix tokens sharing one run of them, units packed first-fit
// decreasing under the token and sequence budgets. tests/test_native_plan.py holds it to Python's plan,
// field by field.
//
// Throws nothing but std::bad_alloc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace codescaler::plan {

// Sequences `members` (indices into Plan::seqs) sharing their first `prefix` tokens, which run once; each
// member's remaining tokens run as a continuation of them. `prefix` 0: nothing shared.
struct Unit {
  std::size_t prefix = 0;
  std::vector<std::size_t> members;
};

struct Plan {
  std::vector<std::vector<std::int32_t>> seqs;  // unique (sequence, boundary) pairs to score
  std::vector<std::size_t> pools;               // per unique sequence: the position its score is read at
  std::vector<std::ptrdiff_t> slot;             // per item: index into seqs, or -1 when not run
  std::vector<std::vector<Unit>> packs;         // forward passes

  // Tokens a unit runs: its prefix once, then each member's own continuation.
  std::size_t unit_tokens(const Unit& u) const;
};

// The position Hugging Face's *ForSequenceClassification reads the score at: the rightmost token that is
// not `pad_id`, 0 when every token is, the last token when there is no pad id. An empty sequence without a
// pad id gives Python's -1 as SIZE_MAX (std::size_t(-1)).
std::size_t pool_index(const std::vector<std::int32_t>& ids, std::optional<std::int32_t> pad_id);

// Plans the forward passes of `items` (nullptr: not run) split at `bounds`: bounds[i] is how many leading
// tokens of items[i] render its question (0: none). A boundary is used when 0 < b <= the item's pool
// position, else the item runs whole as its own unit. With `share`, items with equal prefix tokens
// (ids[0, b)) form one unit, split by the budget as needed, each part running the prefix again; without
// it, every item is its own unit with prefix b. Preconditions (the caller validates):
// items.size() == bounds.size() (only the first min of the two are planned, as Python's zip),
// max_batch_tokens >= 1 and max_batch_size >= 1 (0 is taken as 1).
Plan make_plan(const std::vector<const std::vector<std::int32_t>*>& items, const std::vector<std::int64_t>& bounds,
               std::optional<std::int32_t> pad_id, bool share, std::size_t max_batch_tokens,
               std::size_t max_batch_size);

}  // namespace codescaler::plan
