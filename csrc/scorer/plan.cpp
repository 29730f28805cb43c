// python/codescaler/plan.py's packed path step for step. Python's arithmetic is on unbounded signed ints
// (an empty sequence without a pad id pools at -1), so lengths, budgets and prefixes are compared here as
// std::int64_t, with budgets clamped to 2^62: no workload that fits in memory reaches that many tokens or
// sequences, so every comparison comes out as Python's. Sorts are std::stable_sort, as Python's sorted.
#include "plan.hpp"

#include <algorithm>
#include <limits>
#include <unordered_map>
#include <utility>

namespace codescaler::plan {

namespace {

using Ids = std::vector<std::int32_t>;

constexpr std::int64_t kHuge = std::int64_t{1} << 62;
constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();

std::int64_t clamped(std::size_t v, std::int64_t lo) {
  return std::clamp(static_cast<std::int64_t>(std::min<std::size_t>(v, kHuge)), lo, kHuge);
}

std::int64_t len(const Ids& s) { return static_cast<std::int64_t>(s.size()); }

// Python's pool position: -1 for an empty sequence without a pad id.
std::int64_t signed_pool(std::size_t pool) { return pool == kNone ? -1 : static_cast<std::int64_t>(pool); }

// A run of tokens: a whole sequence, or the first `n` tokens of one (a prefix).
struct Span {
  const Ids* seq;
  std::size_t n;
  bool operator==(const Span& o) const { return n == o.n && std::equal(seq->begin(), seq->begin() + n, o.seq->begin()); }
};

std::uint64_t hash_span(const Span& s) {
  std::uint64_t h = 0x9E3779B97F4A7C15ull ^ s.n;
  for (std::size_t i = 0; i < s.n; ++i) h = (h ^ static_cast<std::uint32_t>((*s.seq)[i])) * 0xFF51AFD7ED558CCDull;
  return h ^ (h >> 32);
}

struct SpanHash {
  std::size_t operator()(const Span& s) const { return static_cast<std::size_t>(hash_span(s)); }
};

// Python's dedupe key: the sequence and its boundary, as given.
struct Item {
  Span seq;
  std::int64_t bound;
  bool operator==(const Item& o) const { return bound == o.bound && seq == o.seq; }
};

struct ItemHash {
  std::size_t operator()(const Item& k) const {
    return static_cast<std::size_t>(hash_span(k.seq) ^ (static_cast<std::uint64_t>(k.bound) * 0xC2B2AE3D27D4EB4Full));
  }
};

// Python's _cut(packed=True): consecutive parts of `order` (longest first) whose continuations, each
// `prefix` tokens shorter than its sequence, sum to at most `room` tokens and count at most `size`.
void cut(const std::vector<Ids>& seqs, const std::vector<std::size_t>& order, std::int64_t prefix,
         std::int64_t room, std::int64_t size, std::vector<Unit>* units) {
  Unit current{static_cast<std::size_t>(prefix), {}};
  std::int64_t used = 0;
  for (std::size_t k : order) {
    const std::int64_t w = len(seqs[k]) - prefix;
    if (!current.members.empty() &&
        (used + w > room || static_cast<std::int64_t>(current.members.size()) >= size)) {
      units->push_back(std::move(current));
      current = Unit{static_cast<std::size_t>(prefix), {}};
      used = 0;
    }
    current.members.push_back(k);
    used += w;
  }
  if (!current.members.empty()) units->push_back(std::move(current));
}

// The open passes of a first-fit packing, as a max tree over (tokens left, sequences left) per pass, so
// finding the first pass with room for a unit skips whole runs of full passes. Unopened leaves hold
// -infinity and never fit.
class Passes {
 public:
  explicit Passes(std::size_t capacity) {
    while (width_ < capacity) width_ *= 2;
    tokens_.assign(2 * width_, std::numeric_limits<std::int64_t>::min());
    count_.assign(2 * width_, std::numeric_limits<std::int64_t>::min());
  }

  void set(std::size_t pass, std::int64_t tokens_left, std::int64_t count_left) {
    std::size_t i = pass + width_;
    tokens_[i] = tokens_left;
    count_[i] = count_left;
    for (i /= 2; i >= 1; i /= 2) {
      tokens_[i] = std::max(tokens_[2 * i], tokens_[2 * i + 1]);
      count_[i] = std::max(count_[2 * i], count_[2 * i + 1]);
    }
  }

  std::int64_t tokens_left(std::size_t pass) const { return tokens_[pass + width_]; }
  std::int64_t count_left(std::size_t pass) const { return count_[pass + width_]; }

  // The lowest pass with at least `tokens` tokens and `count` sequences left, or kNone.
  std::size_t first_fit(std::int64_t tokens, std::int64_t count, std::size_t node = 1) const {
    if (tokens_[node] < tokens || count_[node] < count) return kNone;
    if (node >= width_) return node - width_;
    const std::size_t left = first_fit(tokens, count, 2 * node);
    return left != kNone ? left : first_fit(tokens, count, 2 * node + 1);
  }

 private:
  std::size_t width_ = 1;
  std::vector<std::int64_t> tokens_, count_;
};

// Python's _pack: first-fit decreasing; a unit larger than the budget runs alone.
std::vector<std::vector<Unit>> pack(std::vector<Unit> units, const Plan& p, std::int64_t max_tokens,
                                    std::int64_t max_size) {
  std::vector<std::int64_t> tokens(units.size());
  std::vector<std::size_t> order(units.size());
  for (std::size_t i = 0; i < units.size(); ++i) {
    tokens[i] = static_cast<std::int64_t>(p.unit_tokens(units[i]));
    order[i] = i;
  }
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return tokens[a] > tokens[b]; });
  std::vector<std::vector<Unit>> packs;
  Passes passes(units.size());
  for (std::size_t i : order) {
    const std::int64_t n = tokens[i], m = static_cast<std::int64_t>(units[i].members.size());
    std::size_t at = passes.first_fit(n, m);
    if (at == kNone) {
      at = packs.size();
      packs.emplace_back();
      passes.set(at, max_tokens, max_size);
    }
    packs[at].push_back(std::move(units[i]));
    passes.set(at, passes.tokens_left(at) - n, passes.count_left(at) - m);
  }
  return packs;
}

}  // namespace

std::size_t Plan::unit_tokens(const Unit& u) const {
  std::size_t n = u.prefix;
  for (std::size_t k : u.members) n += seqs[k].size() - u.prefix;
  return n;
}

std::size_t pool_index(const std::vector<std::int32_t>& ids, std::optional<std::int32_t> pad_id) {
  if (!pad_id) return ids.size() - 1;
  for (std::size_t i = ids.size(); i-- > 0;)
    if (ids[i] != *pad_id) return i;
  return 0;
}

Plan make_plan(const std::vector<const std::vector<std::int32_t>*>& items, const std::vector<std::int64_t>& bounds,
               std::optional<std::int32_t> pad_id, bool share, std::size_t max_batch_tokens,
               std::size_t max_batch_size) {
  const std::int64_t max_tokens = clamped(max_batch_tokens, 1), max_size = clamped(max_batch_size, 1);
  const std::size_t n_items = std::min(items.size(), bounds.size());
  Plan p;
  // Identical (sequence, boundary) pairs are scored once: the first occurrence stands for all.
  std::unordered_map<Item, std::size_t, ItemHash> index;
  std::vector<std::int64_t> unique_bound;
  p.slot.reserve(n_items);
  for (std::size_t i = 0; i < n_items; ++i) {
    const Ids* seq = items[i];
    if (!seq) {
      p.slot.push_back(-1);
      continue;
    }
    const auto [it, inserted] = index.emplace(Item{Span{seq, seq->size()}, bounds[i]}, p.seqs.size());
    if (inserted) {
      p.seqs.push_back(*seq);
      unique_bound.push_back(bounds[i]);
    }
    p.slot.push_back(static_cast<std::ptrdiff_t>(it->second));
  }
  p.pools.reserve(p.seqs.size());
  for (const Ids& s : p.seqs) p.pools.push_back(pool_index(s, pad_id));

  // Every answer keeps its pooled token: a boundary at or past it (a question cut by truncation) is none.
  // Units without a shared prefix come first, in sequence order; then one group per distinct prefix, in
  // the order its first sequence appears (Python's dict order).
  std::vector<Unit> units;
  std::unordered_map<Span, std::size_t, SpanHash> group_at;
  std::vector<std::vector<std::size_t>> members;
  for (std::size_t k = 0; k < p.seqs.size(); ++k) {
    const std::int64_t b = unique_bound[k];
    if (!(b > 0 && b <= signed_pool(p.pools[k]))) {
      units.push_back(Unit{0, {k}});
    } else if (share) {
      const auto [it, inserted] = group_at.emplace(Span{&p.seqs[k], static_cast<std::size_t>(b)}, members.size());
      if (inserted) members.emplace_back();
      members[it->second].push_back(k);
    } else {
      units.push_back(Unit{static_cast<std::size_t>(b), {k}});
    }
  }
  for (std::vector<std::size_t>& ks : members) {
    const std::int64_t prefix = static_cast<std::int64_t>(unique_bound[ks[0]]);
    // A group larger than the budget is split; each part runs the prefix again (the same way).
    std::stable_sort(ks.begin(), ks.end(),
                     [&](std::size_t a, std::size_t b) { return p.seqs[a].size() > p.seqs[b].size(); });
    cut(p.seqs, ks, prefix, std::max<std::int64_t>(max_tokens - prefix, 1), max_size, &units);
  }
  p.packs = pack(std::move(units), p, max_tokens, max_size);
  return p;
}

}  // namespace codescaler::plan
