/* Opens and closes one engine CYCLES times through the C ABI, scoring one pair per cycle, and prints one
 * JSON object: the resident set after each cycle (kB), how many mappings of the compiled blocks' libraries
 * the process holds at the end, and whether any thread's stack is executable.
 * Usage: codescaler_scorer_cycles ENGINE_DIR CYCLES (tests/test_cpp_scorer.py runs it). */
#include <codescaler/codescaler.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rss_kb(void) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
  if (f) fclose(f);
  return kb;
}

/* Mappings of the blocks' shared libraries (*.wrapper.so), and whether a stack mapping is executable. */
static void maps(int* blocks, int* exec_stack) {
  FILE* f = fopen("/proc/self/maps", "r");
  char line[4096];
  *blocks = 0;
  *exec_stack = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (strstr(line, ".wrapper.so")) ++*blocks;
    char perms[8] = "";
    if (sscanf(line, "%*s %7s", perms) == 1 && strstr(line, "[stack") && perms[2] == 'x') *exec_stack = 1;
  }
  if (f) fclose(f);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: codescaler_scorer_cycles ENGINE_DIR CYCLES\n");
    return 2;
  }
  const long cycles = strtol(argv[2], NULL, 10);
  const char* question = "Write add(a, b).";
  const char* response = "```python\ndef add(a, b):\n    return a + b\n```";
  char error[512];
  codescaler_options options;
  codescaler_options_init(&options);
  options.threads = 1;
  printf("{\"rss_kb\": [");
  double first = 0;
  for (long i = 0; i < cycles; ++i) {
    codescaler_scorer* scorer = NULL;
    codescaler_status st = codescaler_open(argv[1], &options, &scorer, error, sizeof error);
    if (st != CODESCALER_OK) {
      fprintf(stderr, "open: %s: %s\n", codescaler_status_name(st), error);
      return 1;
    }
    codescaler_reward reward;
    st = codescaler_score_batch(scorer, 1, &question, NULL, &response, NULL, &reward, error, sizeof error);
    if (st != CODESCALER_OK || reward.item_status != CODESCALER_OK) {
      fprintf(stderr, "score: %s: %s\n", codescaler_status_name(st), error);
      return 1;
    }
    if (i == 0) first = reward.reward;
    if (reward.reward != first) {
      fprintf(stderr, "cycle %ld: reward %.17g, first cycle %.17g\n", i, reward.reward, first);
      return 1;
    }
    codescaler_close(scorer);
    printf("%s%ld", i ? ", " : "", rss_kb());
  }
  int blocks = 0, exec_stack = 0;
  maps(&blocks, &exec_stack);
  printf("], \"block_maps\": %d, \"exec_stack\": %s, \"reward\": %.17g}\n", blocks, exec_stack ? "true" : "false", first);
  return 0;
}
