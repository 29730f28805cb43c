// C++ API tests for codescaler::plan, run by ctest without Python: small workloads whose plans are worked
// out by hand below. Parity with Python's planner on thousands of random workloads is
// tests/test_native_plan.py.
#include "expect.hpp"
#include "plan.hpp"

#include <cstdio>
#include <vector>

using namespace codescaler::plan;

namespace {

using codescaler_test::failures;

using Ids = std::vector<std::int32_t>;
using Members = std::vector<std::size_t>;

// `n` tokens 100, 101, ... : the shared question.
Ids question(std::size_t n) {
  Ids ids;
  for (std::size_t i = 0; i < n; ++i) ids.push_back(100 + static_cast<std::int32_t>(i));
  return ids;
}

Ids cat(Ids a, const Ids& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<const Ids*> refs(const std::vector<Ids>& seqs) {
  std::vector<const Ids*> out;
  for (const Ids& s : seqs) out.push_back(&s);
  return out;
}

bool unit_is(const Unit& u, std::size_t prefix, const Members& members) {
  return u.prefix == prefix && u.members == members;
}

void test_pool_index() {
  EXPECT(pool_index({5, 7, 0, 0}, 0) == 1);  // ends in the pad id: read one token earlier
  EXPECT(pool_index({0, 5, 0, 7}, 0) == 3);  // the pad id inside does not matter
  EXPECT(pool_index({0, 0, 0}, 0) == 0);     // all pad
  EXPECT(pool_index({5, 7, 0, 0}, std::nullopt) == 3);
  EXPECT(pool_index({}, std::nullopt) == static_cast<std::size_t>(-1));  // Python's -1
  EXPECT(pool_index({}, 0) == 0);
}

void test_dedupe_and_slots() {
  const Ids a{1, 2, 3}, b{1, 2, 4}, a_again{1, 2, 3};
  const Plan p = make_plan({&a, nullptr, &b, &a_again}, {0, 0, 1, 1}, std::nullopt, true, 100, 8);
  EXPECT(p.seqs == (std::vector<Ids>{a, b}));
  EXPECT(p.pools == (std::vector<std::size_t>{2, 2}));
  EXPECT(p.slot == (std::vector<std::ptrdiff_t>{0, -1, 1, 0}));
  // a stays in group 0, b alone in group 1; prefixes under 16 tokens are not shared.
  EXPECT(p.packs.size() == 1 && p.packs[0].size() == 2);
  if (p.packs.size() == 1 && p.packs[0].size() == 2) {
    EXPECT(unit_is(p.packs[0][0], 0, {0}));
    EXPECT(unit_is(p.packs[0][1], 0, {1}));
  }
}

void test_shared_prefix() {
  // Three answers of 5, 10 and 5 tokens after a 20-token question: one unit, longest first, ties in order.
  const std::vector<Ids> seqs{cat(question(20), {1, 1, 1, 1, 1}), cat(question(20), Ids(10, 2)),
                              cat(question(20), {3, 3, 3, 3, 3})};
  const Plan p = make_plan(refs(seqs), {4, 4, 4}, std::nullopt, true, 1000, 8);
  EXPECT(p.packs.size() == 1 && p.packs[0].size() == 1);
  if (p.packs.size() == 1 && p.packs[0].size() == 1) {
    EXPECT(unit_is(p.packs[0][0], 20, {1, 0, 2}));
    EXPECT(p.unit_tokens(p.packs[0][0]) == 40);
  }
  // Without sharing, or under min_prefix: three units of their own.
  for (const Plan& q : {make_plan(refs(seqs), {4, 4, 4}, std::nullopt, false, 1000, 8),
                        make_plan(refs(seqs), {4, 4, 4}, std::nullopt, true, 1000, 8, 21)}) {
    EXPECT(q.packs.size() == 1 && q.packs[0].size() == 3);
    if (q.packs.size() == 1 && q.packs[0].size() == 3) {
      EXPECT(unit_is(q.packs[0][0], 0, {1}));
      EXPECT(unit_is(q.packs[0][1], 0, {0}));
      EXPECT(unit_is(q.packs[0][2], 0, {2}));
    }
  }
}

void test_prefix_stops_at_the_pool() {
  // Common prefix 22 tokens (question, 9, pad), but both answers pool at position 20 (the 9).
  const std::vector<Ids> seqs{cat(question(20), {9, 0}), cat(question(20), {9, 0, 0})};
  const Plan p = make_plan(refs(seqs), {0, 0}, 0, true, 1000, 8);
  EXPECT(p.pools == (std::vector<std::size_t>{20, 20}));
  EXPECT(p.packs.size() == 1 && p.packs[0].size() == 1 && unit_is(p.packs[0][0], 20, {1, 0}));
}

void test_group_larger_than_the_budget() {
  // 20-token question, three 10-token continuations, budget 45: room 25 per part, so parts {0, 1} and {2},
  // 40 and 30 tokens, which do not fit one pass together.
  const std::vector<Ids> seqs{cat(question(20), Ids(10, 1)), cat(question(20), Ids(10, 2)),
                              cat(question(20), Ids(10, 3))};
  const Plan p = make_plan(refs(seqs), {0, 0, 0}, std::nullopt, true, 45, 8);
  EXPECT(p.packs.size() == 2);
  if (p.packs.size() == 2) {
    EXPECT(p.packs[0].size() == 1 && unit_is(p.packs[0][0], 20, {0, 1}));
    EXPECT(p.packs[1].size() == 1 && unit_is(p.packs[1][0], 20, {2}));
  }
  // max_batch_size 1: one answer per part and per pass.
  const Plan one = make_plan(refs(seqs), {0, 0, 0}, std::nullopt, true, 1000, 1);
  EXPECT(one.packs.size() == 3);
  for (std::size_t i = 0; i < one.packs.size(); ++i)
    EXPECT(one.packs[i].size() == 1 && unit_is(one.packs[i][0], 20, {i}));
}

void test_first_fit_decreasing() {
  // Units of 15, 20 and 15 tokens, budget 35: 20 opens pass 0, the first 15 joins it, the second opens pass 1.
  const std::vector<Ids> seqs{Ids(15, 1), Ids(20, 2), Ids(15, 3)};
  const Plan p = make_plan(refs(seqs), {0, 1, 2}, std::nullopt, true, 35, 8);
  EXPECT(p.packs.size() == 2);
  if (p.packs.size() == 2) {
    EXPECT(p.packs[0].size() == 2 && unit_is(p.packs[0][0], 0, {1}) && unit_is(p.packs[0][1], 0, {0}));
    EXPECT(p.packs[1].size() == 1 && unit_is(p.packs[1][0], 0, {2}));
  }
  // A unit over the budget runs alone, and nothing joins it.
  const std::vector<Ids> big{Ids(10, 1), Ids(3, 2), Ids(2, 3)};
  const Plan b = make_plan(refs(big), {0, 1, 2}, std::nullopt, true, 5, 8);
  EXPECT(b.packs.size() == 2);
  if (b.packs.size() == 2) {
    EXPECT(b.packs[0].size() == 1 && unit_is(b.packs[0][0], 0, {0}));
    EXPECT(b.packs[1].size() == 2 && unit_is(b.packs[1][0], 0, {1}) && unit_is(b.packs[1][1], 0, {2}));
  }
}

void test_ties_follow_group_order() {
  // Equal units keep the order groups first appear in (7, then 3), not item order.
  const std::vector<Ids> seqs{Ids(5, 1), Ids(5, 2), Ids(5, 3)};
  const Plan p = make_plan(refs(seqs), {7, 3, 7}, std::nullopt, true, 100, 8);
  EXPECT(p.packs.size() == 1 && p.packs[0].size() == 3);
  if (p.packs.size() == 1 && p.packs[0].size() == 3) {
    EXPECT(unit_is(p.packs[0][0], 0, {0}));
    EXPECT(unit_is(p.packs[0][1], 0, {2}));
    EXPECT(unit_is(p.packs[0][2], 0, {1}));
  }
}

void test_nothing_to_run() {
  const Plan empty = make_plan({}, {}, std::nullopt, true, 100, 8);
  EXPECT(empty.seqs.empty() && empty.slot.empty() && empty.packs.empty());
  const Plan none = make_plan({nullptr, nullptr}, {0, 0}, 0, true, 100, 8);
  EXPECT(none.seqs.empty() && none.packs.empty());
  EXPECT(none.slot == (std::vector<std::ptrdiff_t>{-1, -1}));
}

}  // namespace

int main() {
  test_pool_index();
  test_dedupe_and_slots();
  test_shared_prefix();
  test_prefix_stops_at_the_pool();
  test_group_larger_than_the_budget();
  test_first_fit_decreasing();
  test_ties_follow_group_order();
  test_nothing_to_run();
  if (failures) {
    std::fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  std::printf("plan tests passed\n");
  return 0;
}
