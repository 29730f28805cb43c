/* The status codes of the library, numbered once: these numbers are the C ABI (codescaler.h) and the C++
 * enumerations take their values from them (codescaler::ScorerCode in scorer.hpp, codescaler::Status in
 * extract.hpp), so a C caller and a C++ caller read the same outcome as the same number. Public: values are
 * only ever added at the end, never renumbered. */
#ifndef CODESCALER_STATUS_H
#define CODESCALER_STATUS_H

/* What a call returned (codescaler::ScorerCode). */
typedef enum codescaler_status {
  CODESCALER_OK = 0,
  CODESCALER_INVALID_ARGUMENT = 1, /* NULL where a value is needed, sizes that differ, a bad option */
  CODESCALER_INVALID_UTF8 = 2,     /* a question or response is not well-formed UTF-8 */
  CODESCALER_IO_ERROR = 3,
  CODESCALER_BAD_ENGINE = 4,       /* damaged, truncated or inconsistent engine directory */
  CODESCALER_UNSUPPORTED = 5,      /* an engine (or, per reward, a pair) this scorer cannot run exactly */
  CODESCALER_MODEL_ERROR = 6,
  CODESCALER_OUT_OF_MEMORY = 7,
  CODESCALER_INTERNAL_ERROR = 8
} codescaler_status;

/* Extraction outcome of one response (codescaler_reward.extraction; codescaler::Status). */
typedef enum codescaler_extraction {
  CODESCALER_EXTRACT_OK = 0,
  CODESCALER_EXTRACT_NO_BLOCK = 1,
  CODESCALER_EXTRACT_MULTIPLE_BLOCKS = 2,
  CODESCALER_EXTRACT_EMPTY_BLOCK = 3,
  CODESCALER_EXTRACT_SYNTAX_ERROR = 4,
  CODESCALER_EXTRACT_TIMEOUT = 5,
  CODESCALER_EXTRACT_CODE_TOO_LONG = 6 /* the code is over 262,144 UTF-8 bytes: not parsed, not scored */
} codescaler_extraction;

#endif /* CODESCALER_STATUS_H */
