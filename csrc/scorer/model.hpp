// The reward model of an aoti engine run through libtorch: weights from weights.safetensors, the decoder
// blocks compiled by AOTInductor (blocks.pt2, models "pre" and "post"), attention per unit with the CPU
// flash kernel, and the last-token score head. It is Python's codescaler.backends.decoder.PackedDecoder
// operation for operation, so both give the same scores. Only this and blocks.cpp include libtorch.
#pragma once

#include <memory>
#include <vector>

#include "codescaler/scorer.hpp"
#include "engine.hpp"
#include "plan.hpp"

namespace codescaler::model {

class Model {
 public:
  static ScorerStatus open(const engine::Engine& engine, std::unique_ptr<Model>* out);
  ~Model();

  // Raw scores (float32, widened) of every member of `pack`'s units, in unit then member order.
  // Not thread-safe: the scorer runs one pass at a time.
  ScorerStatus scores(const plan::Plan& plan, const std::vector<plan::Unit>& pack, std::vector<double>* out);

  // The libtorch this was built against ("2.13.0"), and its intra-op thread count (process-wide).
  static const char* torch_version();
  static void set_threads(unsigned threads);

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace codescaler::model
