// The BPE model over raw bytes: vocabulary and merge ranks keyed by the bytes a byte-level token stands
// for, merged as Hugging Face's Word::merge_all does (lowest rank first, leftmost among equal ranks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace codescaler::bpe {

class Model {
 public:
  struct Options {
    bool ignore_merges = false;          // a piece that is itself in the vocabulary is one token
    std::optional<std::int32_t> unk_id;  // for bytes missing from the vocabulary (else dropped)
    bool fuse_unk = false;
  };

  // `vocab`: (token bytes, id); `merges`: (left bytes, right bytes) in rank order. Returns an empty
  // string on success, else what is wrong.
  std::string build(const std::vector<std::pair<std::string, std::int32_t>>& vocab,
                    const std::vector<std::pair<std::string, std::string>>& merges, const Options& options);

  // Appends the ids of one pre-tokenized piece.
  void encode(std::string_view piece, std::vector<std::int32_t>& ids) const;

  std::optional<std::int32_t> find(std::string_view bytes) const;
  std::int32_t max_id() const { return max_id_; }

 private:
  struct Merge {
    std::uint32_t rank;
    std::int32_t id;
  };
  std::optional<Merge> merge_of(std::int32_t left, std::int32_t right) const;
  void merge_small(std::vector<std::int32_t>& symbols) const;
  void merge_large(std::vector<std::int32_t>& symbols) const;

  Options options_;
  std::int32_t max_id_ = -1;
  std::int32_t byte_ids_[256];
  // Open addressing, linear probing, power-of-two sizes.
  std::string arena_;
  struct VocabSlot {
    std::uint64_t hash = 0;
    std::uint32_t offset = 0, length = 0;
    std::int32_t id = -1;
  };
  std::vector<VocabSlot> vocab_;
  struct MergeSlot {
    std::uint64_t key = ~0ull;
    Merge merge{};
  };
  std::vector<MergeSlot> merges_;
};

}  // namespace codescaler::bpe
