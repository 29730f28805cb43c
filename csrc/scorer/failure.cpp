#include "failure.hpp"

#include <fstream>
#include <sstream>

namespace codescaler {

void fail(ScorerCode code, std::string message) { throw Failure{{code, std::move(message)}}; }

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) fail(ScorerCode::io_error, path + ": cannot open");
  std::ostringstream buffer;
  buffer << file.rdbuf();
  if (file.bad()) fail(ScorerCode::io_error, path + ": read error");
  return buffer.str();
}

}  // namespace codescaler
