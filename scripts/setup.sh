#!/usr/bin/env bash
# Shared set-up for the README's commands (sourced by scripts/standalone.sh and
# scripts/test.sh): installs what a fresh Debian machine with only the Rust toolchain
# lacks, and points cargo at a build cache that outlives a fresh clone.
set -euo pipefail

# RocksDB's C++ takes ~9 minutes to build; keep one target dir across clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fjord/target}"

need_apt=()
# librocksdb-sys generates its bindings with bindgen, which needs libclang.
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  need_apt+=(libclang-dev)
fi
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
# tikv-jemalloc-sys (the fjord binary's allocator) builds jemalloc with configure + make.
command -v make >/dev/null 2>&1 || need_apt+=(make)
for pkg in "$@"; do
  case "$pkg" in
    curl) command -v curl >/dev/null 2>&1 || need_apt+=(curl) ;;
    python3-venv) python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv) ;;
    # Cluster tests start a real ZooKeeper (Debian's package; it pulls in a JRE).
    zookeeper) [ -x /usr/share/zookeeper/bin/zkServer.sh ] || need_apt+=(zookeeper) ;;
    *) need_apt+=("$pkg") ;;
  esac
done

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing packages. Run:  sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
fi
