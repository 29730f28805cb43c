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
  const Plan p = make_plan({&a, nullptr, &b, &a_again}, {0, 0, 0, 0}, std::nullopt, true, 100, 8);
  EXPECT(p.seqs == (std::vector<Ids>{a, b}));
  EXPECT(p.pools == (std::vector<std::size_t>{2, 2}));
  EXPECT(p.slot == (std::vector<std::ptrdiff_t>{0, -1, 1, 0}));
  // Boundary 0: each sequence a unit of its own with no prefix, even when sharing.
  EXPECT(p.packs.size() == 1 && p.packs[0].size() == 2);
  if (p.packs.size() == 1 && p.packs[0].size() == 2) {
    EXPECT(unit_is(p.packs[0][0], 0, {0}));
    EXPECT(unit_is(p.packs[0][1], 0, {1}));
  }
  // The same tokens with another boundary are another item (Python's key is (sequence, boundary)).
  const Plan q = make_plan({&a, &a_again}, {0, 2}, std::nullopt, true, 100, 8);
  EXPECT(q.seqs == (std::vector<Ids>{a, a}));
  EXPECT(q.slot == (std::vector<std::ptrdiff_t>{0, 1}));
}

void test_shared_prefix() {
  // Three answers of 5, 10 and 5 tokens after a 20-token question: one unit, longest first, ties in order.
  const std::vector<Ids> seqs{cat(question(20), {1, 1, 1, 1, 1}), cat(question(20), Ids(10, 2)),
                              cat(question(20), {3, 3, 3, 3, 3})};
  const Plan p = make_plan(refs(seqs), {20, 20, 20}, std::nullopt, true, 1000, 8);
  EXPECT(p.packs.size() == 1 && p.packs[0].size() == 1);
  if (p.packs.size() == 1 && p.packs[0].size() == 1) {
    EXPECT(unit_is(p.packs[0][0], 20, {1, 0, 2}));
    EXPECT(p.unit_tokens(p.packs[0][0]) == 40);
  }
  // Without sharing, each is a unit of its own, still split at its boundary (computed the same way).
  const Plan q = make_plan(refs(seqs), {20, 20, 20}, std::nullopt, false, 1000, 8);
  EXPECT(q.packs.size() == 1 && q.packs[0].size() == 3);
  if (q.packs.size() == 1 && q.packs[0].size() == 3) {
    EXPECT(unit_is(q.packs[0][0], 20, {1}));
    EXPECT(unit_is(q.packs[0][1], 20, {0}));
    EXPECT(unit_is(q.packs[0][2], 20, {2}));
  }
  // However short: a one-token prefix is shared too (there is no minimum).
  const Plan r = make_plan(refs(seqs), {1, 1, 1}, std::nullopt, true, 1000, 8);
  EXPECT(r.packs.size() == 1 && r.packs[0].size() == 1 && unit_is(r.packs[0][0], 1, {1, 0, 2}));
}

void test_units_are_keyed_by_prefix_tokens() {
  // Equal boundaries over different tokens, or different boundaries over the same tokens: different units.
  const std::vector<Ids> seqs{cat(question(20), {1, 1}), cat(question(20), {2, 2}), cat(Ids(20, 7), {3, 3}),
                              cat(question(20), {4, 4})};
  const Plan p = make_plan(refs(seqs), {20, 20, 20, 21}, std::nullopt, true, 1000, 8);
  EXPECT(p.packs.size() == 1 && p.packs[0].size() == 3);
  if (p.packs.size() == 1 && p.packs[0].size() == 3) {
    EXPECT(unit_is(p.packs[0][0], 20, {0, 1}));
    EXPECT(unit_is(p.packs[0][1], 20, {2}));
    EXPECT(unit_is(p.packs[0][2], 21, {3}));
  }
}

void test_boundary_must_leave_the_pool() {
  // Both pool at position 20 (the 9; the zeros are pad): a boundary of 20 is used, 21 is none.
  const std::vector<Ids> seqs{cat(question(20), {9, 0}), cat(question(20), {9, 0, 0})};
  const Plan p = make_plan(refs(seqs), {20, 20}, 0, true, 1000, 8);
  EXPECT(p.pools == (std::vector<std::size_t>{20, 20}));
  EXPECT(p.packs.size() == 1 && p.packs[0].size() == 1 && unit_is(p.packs[0][0], 20, {1, 0}));
  const Plan q = make_plan(refs(seqs), {21, 21}, 0, true, 1000, 8);
  EXPECT(q.packs.size() == 1 && q.packs[0].size() == 2);
  if (q.packs.size() == 1 && q.packs[0].size() == 2) {
    EXPECT(unit_is(q.packs[0][0], 0, {1}));
    EXPECT(unit_is(q.packs[0][1], 0, {0}));
  }
  // A negative boundary is none as well.
  const Plan r = make_plan(refs(seqs), {-1, -1}, 0, true, 1000, 8);
  EXPECT(r.packs.size() == 1 && r.packs[0].size() == 2 && unit_is(r.packs[0][0], 0, {1}));
}

void test_group_larger_than_the_budget() {
  // 20-token question, three 10-token continuations, budget 45: room 25 per part, so parts {0, 1} and {2},
  // 40 and 30 tokens, which do not fit one pass together.
  const std::vector<Ids> seqs{cat(question(20), Ids(10, 1)), cat(question(20), Ids(10, 2)),
                              cat(question(20), Ids(10, 3))};
  const Plan p = make_plan(refs(seqs), {20, 20, 20}, std::nullopt, true, 45, 8);
  EXPECT(p.packs.size() == 2);
  if (p.packs.size() == 2) {
    EXPECT(p.packs[0].size() == 1 && unit_is(p.packs[0][0], 20, {0, 1}));
    EXPECT(p.packs[1].size() == 1 && unit_is(p.packs[1][0], 20, {2}));
  }
  // max_batch_size 1: one answer per part and per pass.
  const Plan one = make_plan(refs(seqs), {20, 20, 20}, std::nullopt, true, 1000, 1);
  EXPECT(one.packs.size() == 3);
  for (std::size_t i = 0; i < one.packs.size(); ++i)
    EXPECT(one.packs[i].size() == 1 && unit_is(one.packs[i][0], 20, {i}));
}

void test_first_fit_decreasing() {
  // Units of 15, 20 and 15 tokens, budget 35: 20 opens pass 0, the first 15 joins it, the second opens pass 1.
  const std::vector<Ids> seqs{Ids(15, 1), Ids(20, 2), Ids(15, 3)};
  const Plan p = make_plan(refs(seqs), {0, 0, 0}, std::nullopt, true, 35, 8);
  EXPECT(p.packs.size() == 2);
  if (p.packs.size() == 2) {
    EXPECT(p.packs[0].size() == 2 && unit_is(p.packs[0][0], 0, {1}) && unit_is(p.packs[0][1], 0, {0}));
    EXPECT(p.packs[1].size() == 1 && unit_is(p.packs[1][0], 0, {2}));
  }
  // A unit over the budget runs alone, and nothing joins it.
  const std::vector<Ids> big{Ids(10, 1), Ids(3, 2), Ids(2, 3)};
  const Plan b = make_plan(refs(big), {0, 0, 0}, std::nullopt, true, 5, 8);
  EXPECT(b.packs.size() == 2);
  if (b.packs.size() == 2) {
    EXPECT(b.packs[0].size() == 1 && unit_is(b.packs[0][0], 0, {0}));
    EXPECT(b.packs[1].size() == 2 && unit_is(b.packs[1][0], 0, {1}) && unit_is(b.packs[1][1], 0, {2}));
  }
}

void test_ties_follow_unit_order() {
  // Equal units keep Python's order: units without a shared prefix first (in sequence order), then one
  // per prefix in the order it first appears, not item order.
  const std::vector<Ids> seqs{cat(Ids(2, 7), {1, 1, 1}), Ids(5, 2), cat(Ids(2, 8), {3, 3, 3}), Ids(5, 4)};
  const Plan p = make_plan(refs(seqs), {2, 0, 2, 0}, std::nullopt, true, 100, 8);
  EXPECT(p.packs.size() == 1 && p.packs[0].size() == 4);
  if (p.packs.size() == 1 && p.packs[0].size() == 4) {
    EXPECT(unit_is(p.packs[0][0], 0, {1}));
    EXPECT(unit_is(p.packs[0][1], 0, {3}));
    EXPECT(unit_is(p.packs[0][2], 2, {0}));
    EXPECT(unit_is(p.packs[0][3], 2, {2}));
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
  test_units_are_keyed_by_prefix_tokens();
  test_boundary_must_leave_the_pool();
  test_group_larger_than_the_budget();
  test_first_fit_decreasing();
  test_ties_follow_unit_order();
  test_nothing_to_run();
  if (failures) {
    std::fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  std::printf("plan tests passed\n");
  return 0;
}
