#include "blocks.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <caffe2/serialize/in_memory_adapter.h>
#include <caffe2/serialize/inline_container.h>
#include <c10/util/hash.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>

#include "failure.hpp"

namespace codescaler::blocks {

namespace {

namespace fs = std::filesystem;

// Bumped when what is written under a key changes (the stack patch below is part of it).
constexpr const char* kLayout = "cpp-blocks";

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// A record name of the package as a relative path that stays inside the directory it is written to.
bool confined(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.find('\0') != std::string::npos) return false;
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t end = std::min(name.find('/', start), name.size());
    const std::string_view part(name.data() + start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

std::uint64_t little(const unsigned char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// What `execstack -c` does: the PT_GNU_STACK header of an ELF64 little-endian library loses PF_X. The
// blocks never run code on the stack; the flag comes from an assembled object without a .note.GNU-stack
// section, and glibc would make every thread's stack executable when loading such a library.
void clear_exec_stack(unsigned char* elf, std::size_t size) {
  if (size < 64 || std::memcmp(elf, "\x7f" "ELF", 4) != 0 || elf[4] != 2 || elf[5] != 1) return;
  const std::uint64_t phoff = little(elf + 0x20, 8), entsize = little(elf + 0x36, 2), count = little(elf + 0x38, 2);
  if (entsize < 8) return;
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t at = phoff + i * entsize;
    if (at > size || size - at < 8) return;
    constexpr std::uint64_t kGnuStack = 0x6474e551, kExecute = 1;
    if (little(elf + at, 4) == kGnuStack) elf[at + 4] &= static_cast<unsigned char>(~kExecute);
  }
}

void write_file(const std::string& path, const unsigned char* data, std::size_t size) {
  Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755)};
  if (f.fd < 0) fail(ScorerCode::io_error, path + ": cannot create (" + std::strerror(errno) + ")");
  while (size > 0) {
    const ssize_t n = ::write(f.fd, data, size);
    if (n <= 0) fail(ScorerCode::io_error, path + ": write error (" + std::strerror(errno) + ")");
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// Every record of the package under `dir`, shared libraries with a non-executable stack.
void extract(const std::string& package, const std::string& bytes, const std::string& dir) {
  std::vector<std::string> names;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(
        std::make_shared<caffe2::serialize::MemoryReadAdapter>(bytes.data(), static_cast<off_t>(bytes.size())));
    names = reader->getAllRecords();
  } catch (const std::exception& ex) {
    fail(ScorerCode::bad_engine, package + ": cannot load the compiled blocks (not a torch package: " +
                                     std::string(ex.what()).substr(0, 300) + ")");
  }
  for (const std::string& name : names) {
    if (!confined(name)) fail(ScorerCode::bad_engine, package + ": cannot load the compiled blocks (a record named \"" +
                                                          name + "\" would be written outside its directory)");
    std::error_code ec;
    const fs::path out = fs::path(dir) / name;
    fs::create_directories(out.parent_path(), ec);
    if (ec) fail(ScorerCode::io_error, out.parent_path().string() + ": cannot create (" + ec.message() + ")");
    at::DataPtr data;
    std::size_t size = 0;
    try {
      std::tie(data, size) = reader->getRecord(name);
    } catch (const std::exception& ex) {
      fail(ScorerCode::bad_engine, package + ": cannot load the compiled blocks (record " + name + ": " +
                                       std::string(ex.what()).substr(0, 300) + ")");
    }
    auto* p = static_cast<unsigned char*>(data.get());
    if (name.size() > 3 && name.compare(name.size() - 3, 3, ".so") == 0) clear_exec_stack(p, size);
    write_file(out.string(), p, size);
  }
}

}  // namespace

ScorerStatus cache_root(std::string* out) {
  auto set = [](const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : std::string();
  };
  if (std::string c = set("CODESCALER_CACHE"); !c.empty()) *out = c;
  else if (std::string x = set("XDG_CACHE_HOME"); !x.empty()) *out = x + "/codescaler";
  else if (std::string h = set("HOME"); !h.empty()) *out = h + "/.cache/codescaler";
  else return {ScorerCode::io_error, "no cache directory for the compiled blocks: set CODESCALER_CACHE (or HOME)"};
  return {};
}

ScorerStatus unpack(const std::string& package, std::string* dir) {
  try {
    const std::string bytes = read_file(package);
    c10::sha1 hash(bytes);
    std::string root;
    if (ScorerStatus s = cache_root(&root); !s.ok()) return s;
    const std::string parent = root + "/" + kLayout;
    const std::string final_dir = parent + "/" + hash.str();
    struct stat st {};
    if (::stat(final_dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      *dir = final_dir;
      return {};
    }
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) return {ScorerCode::io_error, parent + ": cannot create the compiled blocks' cache (" + ec.message() +
                                              "); set CODESCALER_CACHE to a writable directory"};
    const std::string lock_path = final_dir + ".lock";
    Fd lock{::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)};
    if (lock.fd < 0) return {ScorerCode::io_error, lock_path + ": cannot open (" + std::strerror(errno) + ")"};
    while (::flock(lock.fd, LOCK_EX) != 0)
      if (errno != EINTR) return {ScorerCode::io_error, lock_path + ": cannot lock (" + std::strerror(errno) + ")"};
    if (::stat(final_dir.c_str(), &st) != 0) {  // else another process unpacked it while this one waited
      const std::string partial = final_dir + ".partial";
      fs::remove_all(partial, ec);  // what a killed process left
      if (ec || !fs::create_directory(partial, ec) || ec)
        return {ScorerCode::io_error, partial + ": cannot create (" + ec.message() + ")"};
      try {
        extract(package, bytes, partial);
      } catch (...) {
        fs::remove_all(partial, ec);
        throw;
      }
      if (::rename(partial.c_str(), final_dir.c_str()) != 0)
        return {ScorerCode::io_error, final_dir + ": cannot rename into place (" + std::strerror(errno) + ")"};
    }
    *dir = final_dir;
    return {};
  } catch (const Failure& f) {
    return f.status;
  } catch (const std::bad_alloc&) {
    return {ScorerCode::out_of_memory, package + ": out of memory unpacking the compiled blocks"};
  } catch (const std::exception& ex) {
    return {ScorerCode::io_error, package + ": cannot unpack the compiled blocks (" + std::string(ex.what()).substr(0, 300) + ")"};
  }
}

}  // namespace codescaler::blocks
