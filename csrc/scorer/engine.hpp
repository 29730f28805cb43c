// An `--format aoti` engine directory as the C++ scorer reads it: manifest.json checked field by field,
// the files it lists, the machine it was compiled for, the tokenizer (checked against the manifest's
// probes) and the recorded chat-template splice. No libtorch here; model.cpp loads the tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codescaler/scorer.hpp"
#include "codescaler/tokenizer.hpp"

namespace codescaler::engine {

// The compiled blocks' layer shape, as Python's `codescaler.backends.decoder.Arch`.
struct Arch {
  std::int64_t hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, head_dim = 0;
  double eps = 1e-6;
  bool qk_norm = false, qkv_bias = false;
  std::string dtype;
};

// How (question, code) renders: head + question + middle + code (its leading `code_lstrip` characters
// removed) + tail, for every pair that contains none of `refuse` (verified by probes at export).
struct Splice {
  std::string head, middle, tail, code_lstrip;
  std::vector<std::string> refuse;
  // Bytes of `middle` up to and including its last occurrence of one of the tokenizer's added tokens
  // (Python's Encoder: the end of the question's part of every conversation); npos when middle holds none.
  std::size_t question_end = std::string::npos;
  // The refuse string `question` or `code` contains, or nullptr when the splice covers the pair.
  const std::string* refused_by(std::string_view question, std::string_view code) const;
  void join(std::string_view question, std::string_view code, std::string& out) const;
  // head + question + middle[0, question_end): the text whose tokens every conversation about `question`
  // starts with, since tokenizers split at added tokens first. Only when question_end is not npos.
  void question_part(std::string_view question, std::string& out) const;
};

struct Engine {
  std::string dir;
  Arch arch;
  std::int64_t layers = 0;
  std::optional<std::int32_t> pad_id;  // the config's pad_token_id: pooling reads the last non-pad token
  std::size_t max_length = 0;
  std::int64_t row_tile = 0;      // tokens per call of the compiled blocks (manifest "row_tile")
  std::size_t special_tail = 0;   // special tokens the tokenizer's post-processor appends after a text
  double rope_scaling = 1.0;
  std::string package_path, weights_path;
  Splice splice;
  std::unique_ptr<Tokenizer> tokenizer;
};

// The compiled blocks' version this scorer runs (Python's decoder.BLOCKS_VERSION).
inline constexpr int kBlocksVersion = 3;

// Reads `dir`; `torch_version` is the linked libtorch's ("2.13.0"), checked against the engine's.
ScorerStatus open(const std::string& dir, std::string_view torch_version, Engine* out);

}  // namespace codescaler::engine
