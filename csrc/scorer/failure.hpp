// How the scorer's loading and running code reports a problem inside a file: fail() throws a Failure carrying
// the ScorerStatus, and each entry point (engine::open, blocks::unpack, model::Model::open and ::scores)
// catches it once and returns the status, so no exception leaves the library. Private to libcodescaler.so.
#pragma once

#include <string>

#include "codescaler/scorer.hpp"

namespace codescaler {

// Not a std::exception: a catch (const std::exception&) meant for libtorch's or the standard library's
// errors never takes it, and it keeps the code and message chosen where the problem was found.
struct Failure {
  ScorerStatus status;
};

[[noreturn]] void fail(ScorerCode code, std::string message);

// The whole file at `path`, bytes as they are; io_error naming the path when it cannot be opened or read.
std::string read_file(const std::string& path);

}  // namespace codescaler
