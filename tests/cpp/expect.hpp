// The check the C++ tests share: EXPECT(cond) reports the failing condition with its file and line and
// counts it; a test's main returns `failures ? 1 : 0`.
#pragma once

#include <cstdio>

namespace codescaler_test {
inline int failures = 0;
}  // namespace codescaler_test

#define EXPECT(cond)                                                                 \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: EXPECT(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++codescaler_test::failures;                                                   \
    }                                                                                \
  } while (0)
