#include "bpe.hpp"

#include <queue>

namespace codescaler::bpe {
namespace {

std::uint64_t hash_bytes(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, then a final mix
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h | 1;  // 0 marks an empty slot
}

std::uint64_t mix(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

std::size_t table_size(std::size_t n) {
  std::size_t size = 16;
  while (size < n * 2 + 1) size <<= 1;
  return size;
}

std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
         static_cast<std::uint32_t>(right);
}

// Words up to this many bytes merge by rescanning; longer ones (whitespace runs, 10 MB inputs) by heap.
constexpr std::size_t kSmallWord = 48;

}  // namespace

std::string Model::build(const std::vector<std::pair<std::string, std::int32_t>>& vocab,
                         const std::vector<std::pair<std::string, std::string>>& merges,
                         const Options& options) {
  options_ = options;
  arena_.clear();
  vocab_.assign(table_size(vocab.size()), VocabSlot{});
  const std::size_t vmask = vocab_.size() - 1;
  for (const auto& [bytes, id] : vocab) {
    if (id < 0) return "vocab id " + std::to_string(id) + " is negative";
    if (arena_.size() + bytes.size() > UINT32_MAX) return "vocab too large";
    const std::uint64_t h = hash_bytes(bytes);
    std::size_t i = h & vmask;
    while (vocab_[i].hash && !(vocab_[i].hash == h && std::string_view(arena_).substr(
                                                           vocab_[i].offset, vocab_[i].length) == bytes))
      i = (i + 1) & vmask;
    if (!vocab_[i].hash) {
      vocab_[i].hash = h;
      vocab_[i].offset = static_cast<std::uint32_t>(arena_.size());
      vocab_[i].length = static_cast<std::uint32_t>(bytes.size());
      arena_ += bytes;
    }
    vocab_[i].id = id;  // a repeated key keeps its last id, as a JSON map read by serde does
    if (id > max_id_) max_id_ = id;
  }
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    byte_ids_[b] = find(std::string_view(&c, 1)).value_or(-1);
  }
  merges_.assign(table_size(merges.size()), MergeSlot{});
  const std::size_t mmask = merges_.size() - 1;
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto l = find(left), r = find(right), m = find(left + right);
    if (!l || !r || !m)
      return "merge " + std::to_string(rank) + " uses a token missing from the vocab";
    const std::uint64_t key = pair_key(*l, *r);
    std::size_t i = mix(key) & mmask;
    while (merges_[i].key != ~0ull && merges_[i].key != key) i = (i + 1) & mmask;
    merges_[i].key = key;  // a repeated pair keeps its last rank, as Hugging Face's map does
    merges_[i].merge = Merge{static_cast<std::uint32_t>(rank), *m};
  }
  return {};
}

std::optional<std::int32_t> Model::find(std::string_view bytes) const {
  if (vocab_.empty()) return std::nullopt;
  const std::uint64_t h = hash_bytes(bytes);
  const std::size_t mask = vocab_.size() - 1;
  for (std::size_t i = h & mask; vocab_[i].hash; i = (i + 1) & mask) {
    const VocabSlot& s = vocab_[i];
    if (s.hash == h && s.length == bytes.size() &&
        std::string_view(arena_.data() + s.offset, s.length) == bytes)
      return s.id;
  }
  return std::nullopt;
}

std::optional<Model::Merge> Model::merge_of(std::int32_t left, std::int32_t right) const {
  const std::uint64_t key = pair_key(left, right);
  const std::size_t mask = merges_.size() - 1;
  for (std::size_t i = mix(key) & mask; merges_[i].key != ~0ull; i = (i + 1) & mask)
    if (merges_[i].key == key) return merges_[i].merge;
  return std::nullopt;
}

void Model::merge_small(std::vector<std::int32_t>& symbols) const {
  constexpr std::uint32_t kNone = UINT32_MAX;
  std::uint32_t ranks[kSmallWord];
  std::int32_t merged[kSmallWord];
  const auto rate = [&](std::size_t i) {
    const auto m = merge_of(symbols[i], symbols[i + 1]);
    ranks[i] = m ? m->rank : kNone;
    merged[i] = m ? m->id : -1;
  };
  for (std::size_t i = 0; i + 1 < symbols.size(); ++i) rate(i);
  while (symbols.size() > 1) {
    std::size_t best = 0;
    for (std::size_t i = 1; i + 1 < symbols.size(); ++i)
      if (ranks[i] < ranks[best]) best = i;
    if (ranks[best] == kNone) break;
    symbols[best] = merged[best];
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    for (std::size_t i = best + 1; i + 1 < symbols.size(); ++i) {
      ranks[i] = ranks[i + 1];
      merged[i] = merged[i + 1];
    }
    if (best + 1 < symbols.size()) rate(best);
    if (best > 0) rate(best - 1);
  }
}

void Model::merge_large(std::vector<std::int32_t>& symbols) const {
  // Hugging Face's Word::merge_all: a queue of candidate merges ordered by (rank, position), a doubly
  // linked list of symbols, stale queue entries skipped.
  struct Candidate {
    std::uint32_t rank;
    std::size_t pos;
    std::int32_t id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const std::size_t n = symbols.size();
  std::vector<std::ptrdiff_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (std::size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<std::ptrdiff_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<std::ptrdiff_t>(i + 1) : -1;
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  for (std::size_t i = 0; i + 1 < n; ++i)
    if (const auto m = merge_of(symbols[i], symbols[i + 1])) queue.push({m->rank, i, m->id});
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    const auto right = static_cast<std::size_t>(next[top.pos]);
    const auto current = merge_of(symbols[top.pos], symbols[right]);
    if (!current || current->id != top.id) continue;
    symbols[top.pos] = top.id;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[static_cast<std::size_t>(next[right])] = static_cast<std::ptrdiff_t>(top.pos);
    if (prev[top.pos] >= 0) {
      const auto p = static_cast<std::size_t>(prev[top.pos]);
      if (const auto m = merge_of(symbols[p], symbols[top.pos])) queue.push({m->rank, p, m->id});
    }
    if (next[top.pos] >= 0) {
      const auto q = static_cast<std::size_t>(next[top.pos]);
      if (const auto m = merge_of(symbols[top.pos], symbols[q])) queue.push({m->rank, top.pos, m->id});
    }
  }
  std::size_t w = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (alive[i]) symbols[w++] = symbols[i];
  symbols.resize(w);
}

void Model::encode(std::string_view piece, std::vector<std::int32_t>& ids) const {
  if (piece.empty()) return;
  if (options_.ignore_merges)
    if (const auto id = find(piece)) {
      ids.push_back(*id);
      return;
    }
  std::vector<std::int32_t> symbols;
  symbols.reserve(piece.size());
  // Bytes missing from the vocabulary become unk (one per byte, or one per run when fused) or vanish.
  // Only complete symbols take part in merges, as in Hugging Face's merge_word.
  bool in_unk = false;
  for (unsigned char c : piece) {
    const std::int32_t id = byte_ids_[c];
    if (id >= 0) {
      symbols.push_back(id);
      in_unk = false;
    } else if (options_.unk_id) {
      if (!(in_unk && options_.fuse_unk)) symbols.push_back(*options_.unk_id);
      in_unk = true;
    }
  }
  if (symbols.size() <= kSmallWord) merge_small(symbols);
  else merge_large(symbols);
  ids.insert(ids.end(), symbols.begin(), symbols.end());
}

}  // namespace codescaler::bpe
