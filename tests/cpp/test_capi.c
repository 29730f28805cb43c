/* The C ABI from C: statuses, messages, caller-owned buffers, Best-of-N and bad arguments.
 * Usage: codescaler_capi_test ENGINE_DIR (an aoti engine; tests/test_cpp_scorer.py runs it). */
#include <codescaler/codescaler.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;

/* Concurrent callers share one handle. */
struct job {
  codescaler_scorer* scorer;
  const char* const* questions;
  const char* const* responses;
  size_t n;
  codescaler_reward rewards[8];
  codescaler_status status;
};

static void* score_job(void* arg) {
  struct job* j = (struct job*)arg;
  char error[256];
  for (int round = 0; round < 5 && j->status == CODESCALER_OK; ++round)
    j->status = codescaler_score_batch(j->scorer, j->n, j->questions, NULL, j->responses, NULL, j->rewards, error,
                                       sizeof error);
  return NULL;
}

#define CHECK(cond, ...)                              \
  do {                                                \
    if (!(cond)) {                                    \
      fprintf(stderr, "FAIL line %d: ", __LINE__);   \
      fprintf(stderr, __VA_ARGS__);                   \
      fprintf(stderr, "\n");                          \
      ++failures;                                     \
    }                                                 \
  } while (0)

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: codescaler_capi_test ENGINE_DIR\n");
    return 2;
  }
  char error[512];
  codescaler_scorer* scorer = NULL;

  /* Bad arguments and a missing engine: a status and a message, never a crash. */
  CHECK(codescaler_open(NULL, NULL, &scorer, error, sizeof error) == CODESCALER_INVALID_ARGUMENT, "NULL dir");
  CHECK(codescaler_open("/nonexistent/engine", NULL, &scorer, error, sizeof error) == CODESCALER_IO_ERROR,
        "missing dir: %s", error);
  CHECK(strstr(error, "/nonexistent/engine") != NULL, "message names the directory: %s", error);
  CHECK(scorer == NULL, "no handle on failure");
  codescaler_options options;
  codescaler_options_init(&options);
  options.policy = "sideways";
  CHECK(codescaler_open(argv[1], &options, &scorer, error, sizeof error) == CODESCALER_INVALID_ARGUMENT,
        "bad policy");
  CHECK(strstr(error, "sideways") != NULL, "message names the policy: %s", error);
  codescaler_options_init(&options);
  options.struct_size = 3;
  CHECK(codescaler_open(argv[1], &options, &scorer, error, sizeof error) == CODESCALER_INVALID_ARGUMENT,
        "bad struct_size");

  codescaler_options_init(&options);
  options.threads = 2;
  codescaler_status st = codescaler_open(argv[1], &options, &scorer, error, sizeof error);
  if (st != CODESCALER_OK) {
    fprintf(stderr, "FAIL: open: %s: %s\n", codescaler_status_name(st), error);
    return 1;
  }
  char line[512];
  CHECK(codescaler_describe(scorer, line, sizeof line) > 1 && strstr(line, "libtorch") != NULL, "describe: %s", line);

  const char* question = "Write add(a, b).";
  const char* responses[] = {
      "```python\ndef add(a, b):\n    return a + b\n```",
      "no code here",
      "```python\ndef add(a, b) return\n```",
      "",
      "```python\ndef add(a, b):\n    return a + b\n```",
  };
  const char* questions[] = {question, question, question, question, question};
  codescaler_reward rewards[5];
  st = codescaler_score_batch(scorer, 5, questions, NULL, responses, NULL, rewards, error, sizeof error);
  CHECK(st == CODESCALER_OK, "score_batch: %s", error);
  CHECK(rewards[0].extraction == CODESCALER_EXTRACT_OK && rewards[0].has_raw_score && rewards[0].reward > 0,
        "valid code is scored");
  CHECK(fabs(rewards[0].reward - (fmax(rewards[0].raw_score, 0) + log1p(exp(-fabs(rewards[0].raw_score))))) < 1e-12,
        "reward is softplus(raw)");
  CHECK(rewards[1].extraction == CODESCALER_EXTRACT_NO_BLOCK && rewards[1].reward == 0 && !rewards[1].has_raw_score,
        "no block: 0, not run");
  CHECK(rewards[2].extraction == CODESCALER_EXTRACT_SYNTAX_ERROR && rewards[2].reward == 0, "syntax error: 0");
  CHECK(rewards[3].extraction == CODESCALER_EXTRACT_NO_BLOCK && rewards[3].reward == 0, "empty response: 0");
  CHECK(rewards[4].raw_score == rewards[0].raw_score, "identical pairs, identical scores");
  CHECK(strncmp(responses[0] + rewards[0].code_offset, "def add", 7) == 0 && rewards[0].code_length == 31,
        "code range points into the caller's response");

  /* Explicit lengths: bytes after the length are not read, embedded NULs are text. */
  const char with_nul[] = "```python\nx = 1\n```GARBAGE";
  const size_t lengths[] = {19};
  const size_t qlen[] = {strlen(question)};
  const char* one[] = {with_nul};
  st = codescaler_score_batch(scorer, 1, questions, qlen, one, lengths, rewards, error, sizeof error);
  CHECK(st == CODESCALER_OK && rewards[0].extraction == CODESCALER_EXTRACT_OK, "explicit lengths");

  /* Invalid UTF-8 is an error naming the item and byte; nothing is written past n. */
  const char* bad[] = {"ok", "\xff\xfe"};
  st = codescaler_score_batch(scorer, 2, questions, NULL, bad, NULL, rewards, error, sizeof error);
  CHECK(st == CODESCALER_INVALID_UTF8 && strstr(error, "responses[1]") != NULL, "invalid utf-8: %s", error);
  const char* nulls[] = {NULL};
  CHECK(codescaler_score_batch(scorer, 1, questions, NULL, nulls, NULL, rewards, error, sizeof error) ==
            CODESCALER_INVALID_ARGUMENT, "NULL response");
  CHECK(codescaler_score_batch(NULL, 1, questions, NULL, responses, NULL, rewards, error, sizeof error) ==
            CODESCALER_INVALID_ARGUMENT, "NULL scorer");
  CHECK(codescaler_score_batch(scorer, 0, NULL, NULL, NULL, NULL, NULL, error, sizeof error) == CODESCALER_OK,
        "empty batch");

  /* A tiny error buffer is truncated, still NUL-terminated. */
  char tiny[4];
  codescaler_score_batch(scorer, 2, questions, NULL, bad, NULL, rewards, tiny, sizeof tiny);
  CHECK(strlen(tiny) == 3, "truncated message");

  /* Best-of-N: the highest reward, ties to the earliest. */
  size_t best = 99;
  st = codescaler_best_of_n(scorer, question, strlen(question), 5, responses, NULL, rewards, &best, error, sizeof error);
  CHECK(st == CODESCALER_OK && best == 0, "best_of_n picks the first of two equal valid candidates (got %zu)", best);
  CHECK(codescaler_best_of_n(scorer, question, strlen(question), 0, responses, NULL, rewards, &best, error,
                             sizeof error) == CODESCALER_INVALID_ARGUMENT, "no candidates");
  CHECK(strcmp(codescaler_extraction_name(CODESCALER_EXTRACT_SYNTAX_ERROR), "syntax_error") == 0, "names");

  /* Four threads at once on one handle get the rewards one thread gets. */
  codescaler_reward alone[5];
  CHECK(codescaler_score_batch(scorer, 5, questions, NULL, responses, NULL, alone, error, sizeof error) == CODESCALER_OK,
        "sequential");
  pthread_t threads[4];
  struct job jobs[4];
  for (int t = 0; t < 4; ++t) {
    jobs[t].scorer = scorer;
    jobs[t].questions = questions;
    jobs[t].responses = responses;
    jobs[t].n = 5;
    jobs[t].status = CODESCALER_OK;
    pthread_create(&threads[t], NULL, score_job, &jobs[t]);
  }
  for (int t = 0; t < 4; ++t) {
    pthread_join(threads[t], NULL);
    CHECK(jobs[t].status == CODESCALER_OK, "thread %d status %d", t, jobs[t].status);
    for (int i = 0; i < 5; ++i)
      CHECK(jobs[t].rewards[i].reward == alone[i].reward && jobs[t].rewards[i].extraction == alone[i].extraction,
            "thread %d reward %d", t, i);
  }

  codescaler_close(scorer);
  codescaler_close(NULL);
  if (failures) {
    fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  printf("capi: all checks passed\n");
  return 0;
}
