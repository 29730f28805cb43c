// Scorer: extraction, the recorded template splice, tokenization, the planner, forward passes and the
// shaping, in the order Python's RewardModel.score runs them.
#include "codescaler/scorer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_map>

#include "../tokenizer/unicode.hpp"
#include "engine.hpp"
#include "model.hpp"
#include "plan.hpp"

namespace codescaler {

const char* scorer_code_name(ScorerCode code) {
  switch (code) {
    case ScorerCode::ok: return "ok";
    case ScorerCode::invalid_argument: return "invalid_argument";
    case ScorerCode::invalid_utf8: return "invalid_utf8";
    case ScorerCode::io_error: return "io_error";
    case ScorerCode::bad_engine: return "bad_engine";
    case ScorerCode::unsupported: return "unsupported";
    case ScorerCode::model_error: return "model_error";
    case ScorerCode::out_of_memory: return "out_of_memory";
    case ScorerCode::internal_error: return "internal_error";
  }
  return "?";
}

namespace {

// The published shaping: log(1 + e^x) without overflow, NaN passed through (Python's shape.softplus).
double softplus(double x) {
  if (std::isnan(x)) return x;
  return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x)));
}

ScorerStatus check_utf8(const char* name, const std::vector<std::string_view>& texts) {
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const std::size_t bad = unicode::first_invalid_utf8(texts[i]);
    if (bad != std::string_view::npos)
      return {ScorerCode::invalid_utf8, std::string(name) + "[" + std::to_string(i) + "]: invalid UTF-8 at byte " +
                                            std::to_string(bad) + " of " + std::to_string(texts[i].size())};
  }
  return {};
}

}  // namespace

struct Scorer::Impl {
  engine::Engine engine;
  std::unique_ptr<model::Model> model;
  ScorerOptions options;
  std::size_t max_length = 0;
  unsigned threads = 1;
  std::mutex forward;  // libtorch runs one pass at a time over all its threads

  ScorerStatus run(const std::vector<std::string_view>& questions, const std::vector<std::string_view>& responses,
                   std::vector<Reward>& out);
  ScorerStatus boundaries(const std::vector<std::string_view>& questions, const std::vector<std::size_t>& ran,
                          const std::vector<std::vector<std::int32_t>>& ids, std::size_t n,
                          std::vector<std::int64_t>* out) const;
};

Scorer::Scorer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Scorer::~Scorer() = default;

// Per item (of `n`), how many leading tokens of its conversation render its question (Python's
// Encoder.boundaries): the tokens of head + question + middle up to the template's last added token, the
// post-processor's trailing special tokens left out, when the conversation's ids (ids[t] for item ran[t],
// after truncation) start with them; else 0. Tokenizers split at added tokens before anything else, so
// these tokens depend on the question alone: the same pair gets the same boundary in any batch.
ScorerStatus Scorer::Impl::boundaries(const std::vector<std::string_view>& questions, const std::vector<std::size_t>& ran,
                                      const std::vector<std::vector<std::int32_t>>& ids, std::size_t n,
                                      std::vector<std::int64_t>* out) const {
  out->assign(n, 0);
  if (engine.splice.question_end == std::string::npos || ran.empty()) return {};
  // Each distinct question is tokenized once.
  std::unordered_map<std::string_view, std::size_t> index;
  std::vector<std::string> texts;
  std::vector<std::size_t> of(ran.size());
  for (std::size_t t = 0; t < ran.size(); ++t) {
    const auto [it, inserted] = index.emplace(questions[ran[t]], texts.size());
    if (inserted) {
      texts.emplace_back();
      engine.splice.question_part(questions[ran[t]], texts.back());
    }
    of[t] = it->second;
  }
  std::vector<std::vector<std::int32_t>> heads;
  const std::vector<std::string_view> views(texts.begin(), texts.end());
  const std::vector<TokenizerStatus> statuses = engine.tokenizer->encode_batch(views, &heads, true, threads);
  if (statuses.size() != texts.size()) return {ScorerCode::out_of_memory, "out of memory tokenizing"};
  for (std::size_t j = 0; j < statuses.size(); ++j) {
    if (!statuses[j].ok())
      return {statuses[j].code == TokenizerCode::out_of_memory ? ScorerCode::out_of_memory : ScorerCode::internal_error,
              "tokenizing a question: " + statuses[j].message};
    heads[j].resize(heads[j].size() - std::min(heads[j].size(), engine.special_tail));
  }
  for (std::size_t t = 0; t < ran.size(); ++t) {
    const std::vector<std::int32_t>& head = heads[of[t]];
    const std::vector<std::int32_t>& full = ids[t];
    if (!head.empty() && full.size() >= head.size() && std::equal(head.begin(), head.end(), full.begin()))
      (*out)[ran[t]] = static_cast<std::int64_t>(head.size());
  }
  return {};
}

ScorerStatus Scorer::Impl::run(const std::vector<std::string_view>& questions,
                               const std::vector<std::string_view>& responses, std::vector<Reward>& out) {
  const std::size_t n = questions.size();
  if (responses.size() != n)
    return {ScorerCode::invalid_argument, "questions has " + std::to_string(n) + " items but responses has " +
                                              std::to_string(responses.size())};
  if (ScorerStatus s = check_utf8("questions", questions); !s.ok()) return s;
  if (ScorerStatus s = check_utf8("responses", responses); !s.ok()) return s;
  out.assign(n, Reward{});
  if (n == 0) return {};

  Options extract_options;
  extract_options.policy = options.policy;
  extract_options.language = options.language;
  extract_options.validate = true;  // no CPython here: the C++ check of CPython's rules (see scorer.hpp)
  extract_options.parse_budget_steps = options.parse_budget_steps;
  const std::vector<Extraction> found = extract_batch(responses, extract_options, threads);

  // Render what runs through the model; a pair the recorded splice does not cover is not scored.
  std::vector<std::string> texts;
  std::vector<std::size_t> ran;  // item of each text
  std::string text;
  for (std::size_t i = 0; i < n; ++i) {
    Reward& r = out[i];
    const Extraction& e = found[i];
    r.status = e.status;
    const bool valid = e.status == Status::ok;
    if (valid) {
      r.code.assign(e.code(responses[i]));
      r.code_begin = e.code_begin;
      r.code_end = e.code_end;
    }
    if (!valid && !options.score_empty) continue;
    if (const std::string* refused = engine.splice.refused_by(questions[i], r.code)) {
      r.item = ScorerCode::unsupported;
      r.reward = std::numeric_limits<double>::quiet_NaN();
      r.message = "the question or code contains \"" + *refused +
                  "\", which the chat template rewrites; only Python (Jinja) renders this pair exactly";
      continue;
    }
    engine.splice.join(questions[i], r.code, text);
    texts.push_back(text);
    ran.push_back(i);
  }

  // Tokenize (in parallel), truncating on the right at max_length as upstream does.
  std::vector<std::vector<std::int32_t>> ids;
  {
    std::vector<std::string_view> views(texts.begin(), texts.end());
    const std::vector<TokenizerStatus> statuses = engine.tokenizer->encode_batch(views, &ids, true, threads);
    if (statuses.size() != texts.size()) return {ScorerCode::out_of_memory, "out of memory tokenizing"};
    for (std::size_t i = 0; i < statuses.size(); ++i) {
      if (!statuses[i].ok())
        return {statuses[i].code == TokenizerCode::out_of_memory ? ScorerCode::out_of_memory : ScorerCode::internal_error,
                "tokenizing item " + std::to_string(ran[i]) + ": " + statuses[i].message};
      if (ids[i].size() > max_length) {
        out[ran[i]].truncated = true;
        engine.tokenizer->truncate(&ids[i], max_length);
      }
    }
  }

  // Plan: identical conversations once, each split at its boundary, each question's tokens once, passes
  // under the budget.
  std::vector<const std::vector<std::int32_t>*> items(n, nullptr);
  for (std::size_t t = 0; t < ran.size(); ++t) items[ran[t]] = &ids[t];
  std::vector<std::int64_t> bounds;
  if (ScorerStatus s = boundaries(questions, ran, ids, n, &bounds); !s.ok()) return s;
  const plan::Plan p = plan::make_plan(items, bounds, engine.pad_id, options.share_prefix, options.max_batch_tokens,
                                       options.max_batch_size);

  std::vector<double> scores(p.seqs.size(), 0.0);
  {
    std::lock_guard<std::mutex> lock(forward);
    std::vector<double> got;
    for (const std::vector<plan::Unit>& pack : p.packs) {
      if (ScorerStatus s = model->scores(p, pack, &got); !s.ok()) return s;
      std::size_t j = 0;
      for (const plan::Unit& u : pack)
        for (std::size_t k : u.members) scores[k] = got.at(j++);
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (p.slot[i] < 0) continue;
    Reward& r = out[i];
    r.raw_score = scores[static_cast<std::size_t>(p.slot[i])];
    r.has_raw_score = true;
    if (!std::isfinite(r.raw_score)) {  // no reward can be shaped from it, valid code or not
      r.item = ScorerCode::model_error;
      r.reward = std::numeric_limits<double>::quiet_NaN();
      r.message = std::string("the model's score for this pair is ") + (std::isnan(r.raw_score) ? "NaN" : "infinite") +
                  " (the engine's weights, or this input, overflow its dtype " + engine.arch.dtype + ")";
      continue;
    }
    r.reward = r.status == Status::ok ? softplus(r.raw_score) : 0.0;
  }
  return {};
}

ScorerStatus Scorer::open(const std::string& engine_dir, const ScorerOptions& options, std::unique_ptr<Scorer>* out) {
  try {
    if (!out) return {ScorerCode::invalid_argument, "open: out is null"};
    if (options.max_batch_tokens < 1 || options.max_batch_size < 1)
      return {ScorerCode::invalid_argument, "max_batch_tokens and max_batch_size must be positive"};
    auto impl = std::make_unique<Impl>();
    if (ScorerStatus s = engine::open(engine_dir, model::Model::torch_version(), &impl->engine); !s.ok()) return s;
    impl->options = options;
    impl->max_length = options.max_length ? options.max_length : impl->engine.max_length;
    if (impl->max_length > impl->engine.max_length)
      return {ScorerCode::invalid_argument, "max_length " + std::to_string(options.max_length) + " exceeds the engine's " +
                                                std::to_string(impl->engine.max_length) + "; re-export with --max-length"};
    impl->threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
    model::Model::set_threads(options.threads);
    if (ScorerStatus s = model::Model::open(impl->engine, &impl->model); !s.ok()) return s;
    std::unique_ptr<Scorer> scorer(new Scorer(std::move(impl)));
    // One small pass through every stage, so the first real call costs what later ones do.
    Reward warm;
    if (ScorerStatus s = scorer->score("warm-up", "```python\npass\n```", &warm); !s.ok()) return s;
    *out = std::move(scorer);
    return {};
  } catch (const std::bad_alloc&) {
    return {ScorerCode::out_of_memory, engine_dir + ": out of memory while opening"};
  } catch (const std::exception& e) {
    return {ScorerCode::internal_error, engine_dir + ": " + e.what()};
  }
}

ScorerStatus Scorer::score(std::string_view question, std::string_view response, Reward* out) const {
  std::vector<Reward> rewards;
  ScorerStatus s = score_batch({question}, {response}, &rewards);
  if (s.ok()) *out = std::move(rewards[0]);
  return s;
}

ScorerStatus Scorer::score_batch(const std::vector<std::string_view>& questions,
                                 const std::vector<std::string_view>& responses, std::vector<Reward>* out) const {
  if (!out) return {ScorerCode::invalid_argument, "score_batch: out is null"};
  try {
    return impl_->run(questions, responses, *out);
  } catch (const std::bad_alloc&) {
    return {ScorerCode::out_of_memory, "out of memory scoring " + std::to_string(questions.size()) + " responses"};
  } catch (const std::exception& e) {
    return {ScorerCode::internal_error, e.what()};
  }
}

ScorerStatus Scorer::score_groups(const std::vector<std::string_view>& questions,
                                  const std::vector<std::vector<std::string_view>>& groups,
                                  std::vector<std::vector<Reward>>* out) const {
  if (!out) return {ScorerCode::invalid_argument, "score_groups: out is null"};
  if (groups.size() != questions.size())
    return {ScorerCode::invalid_argument, "groups must hold one list per question (" + std::to_string(questions.size()) + ")"};
  try {
    std::vector<std::string_view> qs, rs;
    for (std::size_t i = 0; i < groups.size(); ++i)
      for (std::string_view r : groups[i]) {
        qs.push_back(questions[i]);
        rs.push_back(r);
      }
    std::vector<Reward> flat;
    if (ScorerStatus s = impl_->run(qs, rs, flat); !s.ok()) return s;
    out->assign(groups.size(), {});
    std::size_t at = 0;
    for (std::size_t i = 0; i < groups.size(); ++i)
      for (std::size_t j = 0; j < groups[i].size(); ++j) (*out)[i].push_back(std::move(flat[at++]));
    return {};
  } catch (const std::bad_alloc&) {
    return {ScorerCode::out_of_memory, "out of memory scoring groups"};
  } catch (const std::exception& e) {
    return {ScorerCode::internal_error, e.what()};
  }
}

ScorerStatus Scorer::best_of_n(std::string_view question, const std::vector<std::string_view>& candidates,
                               BestOfN* out) const {
  if (!out) return {ScorerCode::invalid_argument, "best_of_n: out is null"};
  if (candidates.empty()) return {ScorerCode::invalid_argument, "best_of_n needs at least one candidate"};
  try {
    std::vector<std::string_view> qs(candidates.size(), question);
    if (ScorerStatus s = impl_->run(qs, candidates, out->details); !s.ok()) return s;
    // Ties go to the earliest; a candidate that could not be scored (NaN) never wins.
    bool any = false;
    out->index = 0;
    for (std::size_t i = 0; i < out->details.size(); ++i) {
      const double r = out->details[i].reward;
      if (std::isnan(r)) continue;
      if (!any || r > out->details[out->index].reward) out->index = i;
      any = true;
    }
    if (!any) return {out->details[0].item, "best_of_n: no candidate could be scored: " + out->details[0].message};
    return {};
  } catch (const std::bad_alloc&) {
    return {ScorerCode::out_of_memory, "out of memory scoring candidates"};
  } catch (const std::exception& e) {
    return {ScorerCode::internal_error, e.what()};
  }
}

const std::string& Scorer::dtype() const { return impl_->engine.arch.dtype; }
std::size_t Scorer::max_length() const { return impl_->max_length; }

std::string Scorer::describe() const {
  return impl_->engine.dir + " on libtorch " + model::Model::torch_version() + " (AOTInductor blocks, C++), " +
         impl_->engine.arch.dtype + ", cpu, max_length " + std::to_string(impl_->max_length);
}

}  // namespace codescaler
