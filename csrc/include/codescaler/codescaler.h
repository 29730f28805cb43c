/* The CodeScaler scorer behind a C ABI, for services in C, Go (cgo), Rust (bindgen), Java (JNA/Panama).
 *
 * Conventions: an opaque handle; every call returns a codescaler_status and writes a NUL-terminated
 * message into the caller's `error` buffer ("" on success; truncated to `error_size`; NULL to skip);
 * every output array is allocated by the caller; no C++ exception crosses this boundary. Strings are
 * UTF-8 with explicit lengths (a NULL lengths array means NUL-terminated strings). A handle may be used
 * from many threads at once; close it once, after every call on it has returned.
 *
 * Semantics are those of codescaler::Scorer (codescaler/scorer.hpp): the reward is softplus(raw score)
 * for a response with exactly one valid code block (Python validity as CPython's ast.parse rules it, other
 * languages by tree-sitter), else 0.
 */
#ifndef CODESCALER_H
#define CODESCALER_H

#include <stddef.h>
#include <stdint.h>

#include "codescaler/export.h"
#include "codescaler/status.h" /* codescaler_status, codescaler_extraction */

#ifdef __cplusplus
extern "C" {
#endif

#define CODESCALER_ABI_VERSION 1

typedef struct codescaler_scorer codescaler_scorer;

/* Fill with codescaler_options_init, then change what you need; names match the Python options.
 * Fields are only ever added at the end: struct_size tells which ones the caller's header had, and a field
 * it lacks takes its default (a caller built before parse_budget_steps existed still opens). */
typedef struct codescaler_options {
  uint32_t struct_size;      /* sizeof(codescaler_options), set by codescaler_options_init */
  uint32_t threads;          /* 0: libtorch's default, every core for extraction */
  uint64_t max_length;       /* 0: the engine's */
  uint64_t max_batch_tokens; /* 8192 */
  uint64_t max_batch_size;   /* 64 */
  int32_t share_prefix;      /* 1 */
  int32_t score_empty;       /* 0 */
  const char* policy;        /* "codescaler" (default), "last", "best" */
  const char* language;      /* "python" (default), "cpp", "java", "javascript", "go", "rust" */
  uint64_t parse_budget_steps; /* syntax checks of one response stop after this many parser steps
                                  (extraction CODESCALER_EXTRACT_TIMEOUT); counted, not timed, so the
                                  same response gets the same result under any load. 32,000,000 */
} codescaler_options;

typedef struct codescaler_reward {
  double reward;          /* NaN when item_status != CODESCALER_OK */
  double raw_score;       /* meaningful when has_raw_score */
  int32_t has_raw_score;
  int32_t extraction;     /* codescaler_extraction */
  int32_t truncated;      /* the conversation exceeded max_length */
  int32_t item_status;    /* CODESCALER_OK; CODESCALER_UNSUPPORTED: the template cannot render this pair;
                             CODESCALER_MODEL_ERROR: the model's score is NaN or infinite (in raw_score) */
  uint64_t code_offset;   /* the extracted code: bytes [code_offset, code_offset + code_length) of the response */
  uint64_t code_length;
} codescaler_reward;

CODESCALER_API void codescaler_options_init(codescaler_options* options);

CODESCALER_API codescaler_status codescaler_open(const char* engine_dir, const codescaler_options* options,
                                                 codescaler_scorer** out, char* error, size_t error_size);
CODESCALER_API void codescaler_close(codescaler_scorer* scorer);

/* rewards[i] for (questions[i], responses[i]), i < n. */
CODESCALER_API codescaler_status codescaler_score_batch(codescaler_scorer* scorer, size_t n, const char* const* questions,
                                                        const size_t* question_lengths, const char* const* responses,
                                                        const size_t* response_lengths, codescaler_reward* rewards,
                                                        char* error, size_t error_size);

/* Scores n candidates for one question; *best is the highest reward, ties to the earliest. */
CODESCALER_API codescaler_status codescaler_best_of_n(codescaler_scorer* scorer, const char* question, size_t question_length,
                                                      size_t n, const char* const* candidates, const size_t* candidate_lengths,
                                                      codescaler_reward* rewards, size_t* best, char* error, size_t error_size);

/* One line naming the engine, libtorch, dtype and max_length; returns the length it needed. */
CODESCALER_API size_t codescaler_describe(const codescaler_scorer* scorer, char* buffer, size_t size);

CODESCALER_API const char* codescaler_status_name(codescaler_status status);
CODESCALER_API const char* codescaler_extraction_name(int32_t extraction);

#ifdef __cplusplus
}
#endif

#endif /* CODESCALER_H */
