// The compiled blocks of an engine (blocks.pt2, a zip of AOTInductor shared libraries), unpacked once per
// package content into the user's cache and loaded from there. libtorch's own loader unpacks a package
// into a fresh /tmp/aotinductor_* directory per loader ($TMPDIR is not read): ~3.4 MB per handle, left
// behind by a process that exits without closing, and a new path per open, so every open maps the
// libraries again.
#pragma once

#include <string>

#include "codescaler/scorer.hpp"

namespace codescaler::blocks {

// The cache root, as Python's codescaler.tiny._cache_dir(): $CODESCALER_CACHE, else
// $XDG_CACHE_HOME/codescaler, else $HOME/.cache/codescaler.
ScorerStatus cache_root(std::string* out);

// The directory holding `package` unpacked: <cache root>/cpp-blocks/<SHA-1 of the package's bytes>, made
// the first time (under a file lock, written beside and renamed into place, so a killed process leaves at
// most a partial directory that the next open replaces). The shared libraries are written with a
// non-executable stack (AOTInductor's assembled constants ask for an executable one, which glibc grants
// process-wide at dlopen). Same content, same directory: opening again maps nothing new.
ScorerStatus unpack(const std::string& package, std::string* dir);

}  // namespace codescaler::blocks
