#!/usr/bin/env bash
# Shared set-up for the README's commands (sourced by scripts/standalone.sh and
# scripts/test.sh, with the extra packages they need as arguments: `fjord_setup curl`):
# installs what a fresh Debian machine with only the Rust toolchain lacks, and points
# cargo at a build cache that outlives a fresh clone.
#
# Sourcing passes the caller's own arguments to a sourced script when it names none, so
# the work is in a function that only the explicit `fjord_setup …` call runs; this file
# never reads "$@" at top level.

# RocksDB's C++ takes ~19 minutes to build on 2 cores; keep one target dir across clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fjord/target}"

# True when a directory holds a libclang that clang-sys (bindgen's loader) would accept:
# `libclang.so`, `libclang.so.N` or `libclang-N.so[.M]`. `libclang-cpp.so.N` (the C++
# interface, pulled in by other packages) is not libclang and does not count.
fjord_dir_has_libclang() {
  local f base
  for f in "$1"/libclang*.so*; do
    [ -e "$f" ] || continue
    base="${f##*/}"
    case "$base" in
      libclang-cpp*) ;;
      libclang.so | libclang.so.[0-9]* | libclang-[0-9]*.so | libclang-[0-9]*.so.[0-9]*) return 0 ;;
    esac
  done
  return 1
}

# The directories clang-sys searches on Linux, plus LIBCLANG_PATH when set.
# FJORD_LIBCLANG_DIRS (space-separated globs) replaces the list, for the test of this file.
fjord_have_libclang() {
  local d
  # shellcheck disable=SC2086 # the globs expand here
  for d in ${LIBCLANG_PATH:-} ${FJORD_LIBCLANG_DIRS:-/usr/lib/llvm-*/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib}; do
    [ -d "$d" ] && fjord_dir_has_libclang "$d" && return 0
  done
  return 1
}

# Prints the Debian packages missing for the build plus the named extras, one line.
fjord_missing_packages() {
  local need=() pkg
  # librocksdb-sys generates its bindings with bindgen, which loads libclang at build time.
  fjord_have_libclang || need+=(libclang-dev)
  command -v c++ >/dev/null 2>&1 || need+=(g++)
  # tikv-jemalloc-sys (the fjord binary's allocator) builds jemalloc with configure + make.
  command -v make >/dev/null 2>&1 || need+=(make)
  for pkg in "$@"; do
    case "$pkg" in
      curl) command -v curl >/dev/null 2>&1 || need+=(curl) ;;
      python3-venv) python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv) ;;
      # Real-process tests signal processes with kill(1) (bash's builtin does not count).
      procps) { [ -x /bin/kill ] || [ -x /usr/bin/kill ]; } || need+=(procps) ;;
      # Cluster tests start a real ZooKeeper (Debian's package; it pulls in a JRE).
      zookeeper) [ -x /usr/share/zookeeper/bin/zkServer.sh ] || need+=(zookeeper) ;;
      *) dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg") ;;
    esac
  done
  echo "${need[*]}"
}

fjord_setup() {
  local missing
  missing="$(fjord_missing_packages "$@")"
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing $missing with apt-get" >&2
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: missing packages. Run:  sudo apt-get install -y $missing" >&2
    return 1
  fi
}
