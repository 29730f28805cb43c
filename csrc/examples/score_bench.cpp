// Micro-benchmark of the C++ scorer on a workload file (JSON Lines of "question" and "response", as
// benchmarks/bench_cpp.py writes it):
//
//   score_bench ENGINE_DIR WORKLOAD.jsonl [--bon N] [--repeats R] [--threads T]
//
// Times best_of_n on the first N lines (one request: latency p50/p99 over R repeats) and score_batch on
// every line (a GRPO step: responses per second, best of R), and prints one JSON object on stdout.
#include <codescaler/json.hpp>
#include <codescaler/scorer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double at = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(at);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: score_bench ENGINE_DIR WORKLOAD.jsonl [--bon N] [--repeats R] [--threads T]\n";
    return 2;
  }
  std::size_t bon = 16, repeats = 20;
  codescaler::ScorerOptions options;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const unsigned long v = std::strtoul(argv[i + 1], nullptr, 10);
    if (flag == "--bon") bon = v;
    else if (flag == "--repeats") repeats = std::max(1ul, v);
    else if (flag == "--threads") options.threads = static_cast<unsigned>(v);
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  std::ifstream in(argv[2], std::ios::binary);
  std::vector<std::string> questions, responses;
  for (std::string line; std::getline(in, line);) {
    codescaler::json::Value v;
    if (!codescaler::json::parse(line, v).empty() || !v.find("question") || !v.find("response")) {
      std::cerr << argv[2] << ": line " << questions.size() + 1 << " is not a question/response object\n";
      return 2;
    }
    questions.push_back(v.find("question")->string);
    responses.push_back(v.find("response")->string);
  }
  if (questions.size() < bon || bon == 0) {
    std::cerr << argv[2] << ": fewer than " << bon << " lines\n";
    return 2;
  }

  const auto t_open = std::chrono::steady_clock::now();
  std::unique_ptr<codescaler::Scorer> scorer;
  if (const auto s = codescaler::Scorer::open(argv[1], options, &scorer); !s.ok()) {
    std::cerr << "error: " << s.message << "\n";
    return 2;
  }
  const double open_s = seconds_since(t_open);

  std::vector<std::string_view> candidates(responses.begin(), responses.begin() + static_cast<std::ptrdiff_t>(bon));
  std::vector<double> bon_s;
  codescaler::BestOfN best;
  for (std::size_t r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    if (const auto s = scorer->best_of_n(questions[0], candidates, &best); !s.ok()) {
      std::cerr << "error: " << s.message << "\n";
      return 1;
    }
    bon_s.push_back(seconds_since(t0));
  }
  std::vector<std::string_view> qs(questions.begin(), questions.end()), rs(responses.begin(), responses.end());
  std::vector<codescaler::Reward> rewards;
  double grpo_best = 1e300;
  const std::size_t grpo_repeats = std::max<std::size_t>(1, repeats / 5);
  for (std::size_t r = 0; r < grpo_repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    if (const auto s = scorer->score_batch(qs, rs, &rewards); !s.ok()) {
      std::cerr << "error: " << s.message << "\n";
      return 1;
    }
    grpo_best = std::min(grpo_best, seconds_since(t0));
  }
  std::cout << "{\"engine\": \"" << scorer->describe() << "\", \"open_s\": " << open_s
            << ", \"bon_n\": " << bon << ", \"bon_repeats\": " << repeats
            << ", \"bon_p50_s\": " << percentile(bon_s, 0.5) << ", \"bon_p99_s\": " << percentile(bon_s, 0.99)
            << ", \"bon_best\": " << best.index << ", \"grpo_responses\": " << rs.size()
            << ", \"grpo_repeats\": " << grpo_repeats << ", \"grpo_s\": " << grpo_best
            << ", \"grpo_per_s\": " << static_cast<double>(rs.size()) / grpo_best << "}\n";
  return 0;
}
