# Obtains the tree-sitter runtime and grammars at configure time from their source packages on the package
# index (pip download, pinned versions), so no third-party code is committed. The downloaded sdists are
# cached in CODESCALER_SDIST_DIR (CMake variable or environment variable); point it at a folder holding the
# same .tar.gz files for offline builds.
#
# Defines: codescaler_tree_sitter (static C library: runtime + grammars, optimised, hidden symbols) and
# CODESCALER_TS_LICENSES (list of "name;path" pairs flattened as name=path).

set(CODESCALER_SDIST_DIR "$ENV{CODESCALER_SDIST_DIR}" CACHE PATH
    "Folder holding (or receiving) the tree-sitter source packages (*.tar.gz); default <build>/_sdist")
if(NOT CODESCALER_SDIST_DIR)
  set(CODESCALER_SDIST_DIR "${CMAKE_BINARY_DIR}/_sdist" CACHE PATH "" FORCE)
endif()
set(CODESCALER_PIP "" CACHE STRING
    "Command used to download source packages (default: <python> -m pip, then pip on PATH)")

# name, version, module dir inside the sdist; tree-sitter-python 0.25.0's sdist lacks scanner.c, hence 0.23.6.
set(_cs_ts_runtime tree-sitter 0.26.1)
set(_cs_ts_grammars
    python     tree-sitter-python     0.23.6
    cpp        tree-sitter-cpp        0.23.4
    java       tree-sitter-java       0.23.5
    javascript tree-sitter-javascript 0.25.0
    go         tree-sitter-go         0.25.0
    rust       tree-sitter-rust       0.24.2)

find_package(Python3 COMPONENTS Interpreter REQUIRED)

function(_cs_fetch_sdist name version out_dir)
  string(REPLACE "-" "_" stem "${name}")
  set(archive "${CODESCALER_SDIST_DIR}/${stem}-${version}.tar.gz")
  if(NOT EXISTS "${archive}")
    file(MAKE_DIRECTORY "${CODESCALER_SDIST_DIR}")
    if(CODESCALER_PIP)
      set(candidates "${CODESCALER_PIP}")
    else()
      find_program(_cs_pip_exe NAMES pip3 pip)
      set(candidates "${Python3_EXECUTABLE} -m pip")
      if(_cs_pip_exe)
        list(APPEND candidates "${_cs_pip_exe}")
      endif()
    endif()
    message(STATUS "codescaler: downloading ${name}==${version} into ${CODESCALER_SDIST_DIR}")
    foreach(cmd IN LISTS candidates)
      separate_arguments(cmd_list UNIX_COMMAND "${cmd}")
      # Without build isolation pip needs setuptools in this environment to read the sdist's metadata.
      foreach(isolation --no-build-isolation "")
        if(NOT EXISTS "${archive}")
          execute_process(
            COMMAND ${cmd_list} download --no-binary :all: --no-deps ${isolation} --disable-pip-version-check
                    --quiet "${name}==${version}" -d "${CODESCALER_SDIST_DIR}"
            RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
        endif()
      endforeach()
    endforeach()
    if(NOT EXISTS "${archive}")
      message(FATAL_ERROR "codescaler: could not obtain ${archive} (${err}). Download it with\n"
        "  pip download --no-binary :all: --no-deps ${name}==${version} -d <dir>\n"
        "and configure with -DCODESCALER_SDIST_DIR=<dir>.")
    endif()
  endif()
  set(dest "${CMAKE_BINARY_DIR}/_deps/${stem}-${version}")
  if(NOT EXISTS "${dest}/PKG-INFO")
    file(ARCHIVE_EXTRACT INPUT "${archive}" DESTINATION "${CMAKE_BINARY_DIR}/_deps")
  endif()
  set(${out_dir} "${dest}" PARENT_SCOPE)
endfunction()

list(GET _cs_ts_runtime 0 _n)
list(GET _cs_ts_runtime 1 _v)
_cs_fetch_sdist(${_n} ${_v} _cs_runtime_dir)
set(_cs_lib "${_cs_runtime_dir}/tree_sitter/core/lib")
if(NOT EXISTS "${_cs_lib}/src/lib.c")
  message(FATAL_ERROR "codescaler: ${_cs_lib}/src/lib.c not found in the tree-sitter source package")
endif()
set(CODESCALER_TS_LICENSES "tree-sitter=${_cs_runtime_dir}/LICENSE")

# Several grammar sdists lack src/tree_sitter/*.h. The runtime's own copies serve grammars of the current
# ABI (15); ABI-14 grammars need the previous parser.h, which differs only in three names, so a copy with
# those names restored is generated here. A grammar that ships its headers uses them (they sit beside it).
set(_cs_inc15 "${CMAKE_BINARY_DIR}/_deps/grammar-include-abi15")
set(_cs_inc14 "${CMAKE_BINARY_DIR}/_deps/grammar-include-abi14")
foreach(h parser.h alloc.h array.h ts_assert.h)
  configure_file("${_cs_lib}/src/${h}" "${_cs_inc15}/tree_sitter/${h}" COPYONLY)
  configure_file("${_cs_lib}/src/${h}" "${_cs_inc14}/tree_sitter/${h}" COPYONLY)
endforeach()
file(READ "${_cs_lib}/src/parser.h" _cs_parser_h)
function(_cs_patch from to)
  string(FIND "${_cs_parser_h}" "${from}" found)
  if(found EQUAL -1)
    message(FATAL_ERROR "codescaler: ${_cs_lib}/src/parser.h no longer holds '${from}'")
  endif()
  string(REPLACE "${from}" "${to}" patched "${_cs_parser_h}")
  set(_cs_parser_h "${patched}" PARENT_SCOPE)
endfunction()
_cs_patch("uint32_t abi_version;" "uint32_t version;")
_cs_patch("const TSLexerMode *lex_modes;" "const TSLexMode *lex_modes;")
_cs_patch("} TSMapSlice;" "} TSMapSlice;\ntypedef TSMapSlice TSFieldMapSlice;")
file(WRITE "${_cs_inc14}/tree_sitter/parser.h" "${_cs_parser_h}")

set(_cs_ts_sources "${_cs_lib}/src/lib.c")
set(CODESCALER_TS_LANGUAGES "")
list(LENGTH _cs_ts_grammars _len)
math(EXPR _last "${_len} - 1")
foreach(i RANGE 0 ${_last} 3)
  math(EXPR j "${i} + 1")
  math(EXPR k "${i} + 2")
  list(GET _cs_ts_grammars ${i} lang)
  list(GET _cs_ts_grammars ${j} name)
  list(GET _cs_ts_grammars ${k} version)
  _cs_fetch_sdist(${name} ${version} dir)
  file(STRINGS "${dir}/src/parser.c" abi REGEX "^#define LANGUAGE_VERSION [0-9]+" LIMIT_COUNT 1)
  string(REGEX REPLACE ".* " "" abi "${abi}")
  if(NOT abi MATCHES "^1[45]$")
    message(FATAL_ERROR "codescaler: ${name} ${version} has grammar ABI '${abi}', expected 14 or 15")
  endif()
  set(files "${dir}/src/parser.c")
  if(EXISTS "${dir}/src/scanner.c")
    list(APPEND files "${dir}/src/scanner.c")
  endif()
  set_source_files_properties(${files} PROPERTIES INCLUDE_DIRECTORIES "${_cs_inc${abi}}")
  list(APPEND _cs_ts_sources ${files})
  list(APPEND CODESCALER_TS_LANGUAGES ${lang})
  list(APPEND CODESCALER_TS_LICENSES "${name}=${dir}/LICENSE")
endforeach()

add_library(codescaler_tree_sitter STATIC ${_cs_ts_sources})
target_include_directories(codescaler_tree_sitter PRIVATE "${_cs_lib}/src")
target_include_directories(codescaler_tree_sitter SYSTEM PUBLIC "${_cs_lib}/include")
target_compile_definitions(codescaler_tree_sitter PRIVATE
  TREE_SITTER_HIDE_SYMBOLS TREE_SITTER_HIDDEN_SYMBOLS _POSIX_C_SOURCE=200112L _DEFAULT_SOURCE)
set_target_properties(codescaler_tree_sitter PROPERTIES
  C_STANDARD 11 C_VISIBILITY_PRESET hidden POSITION_INDEPENDENT_CODE ON)
target_compile_options(codescaler_tree_sitter PRIVATE -O3 -w)
