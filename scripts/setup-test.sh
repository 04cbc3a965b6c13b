#!/usr/bin/env bash
# Tests scripts/setup.sh's package detection against fake library dirs and a stub apt-get
# on PATH, so the fresh-machine failures it once had cannot come back:
# - `libclang-cpp.so.N` (the C++ interface some other package pulls in) is not libclang:
#   bindgen cannot load it, so `libclang-dev` must still be installed;
# - a caller's own arguments (`standalone.sh --data-dir fjord-data`) never reach apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/lib"
# apt-get and dpkg-query stubs: record calls, install nothing.
cat >"$tmp/bin/apt-get" <<EOF
#!/usr/bin/env bash
echo "\$*" >>"$tmp/apt-calls"
EOF
cat >"$tmp/bin/dpkg-query" <<'EOF'
#!/usr/bin/env bash
exit 1
EOF
chmod +x "$tmp/bin/apt-get" "$tmp/bin/dpkg-query"

failures=0
check() { # description, expected, actual
  if [ "$2" = "$3" ]; then
    echo "ok: $1"
  else
    echo "FAIL: $1: expected [$2], got [$3]" >&2
    failures=$((failures + 1))
  fi
}

# Runs setup with the fake lib dir holding exactly the given file names; prints what
# fjord_missing_packages reports.
missing_with() {
  rm -rf "$tmp/lib" && mkdir -p "$tmp/lib"
  local f
  for f in "$@"; do : >"$tmp/lib/$f"; done
  FJORD_LIBCLANG_DIRS="$tmp/lib" LIBCLANG_PATH="" bash -c 'source scripts/setup.sh && fjord_missing_packages'
}

check "no libclang at all" "libclang-dev" "$(missing_with)"
check "only libclang-cpp.so.14 (not libclang)" "libclang-dev" "$(missing_with libclang-cpp.so.14)"
check "libclang-cpp.so (dev symlink) is not libclang either" "libclang-dev" "$(missing_with libclang-cpp.so)"
check "libclang.so" "" "$(missing_with libclang.so)"
check "libclang.so.1 only" "" "$(missing_with libclang.so.1)"
check "libclang-14.so" "" "$(missing_with libclang-14.so)"
check "libclang-14.so.1" "" "$(missing_with libclang-14.so.1 libclang-cpp.so.14)"
check "a directory that does not exist" "libclang-dev" \
  "$(FJORD_LIBCLANG_DIRS="$tmp/nowhere" LIBCLANG_PATH="" bash -c 'source scripts/setup.sh && fjord_missing_packages')"
: >"$tmp/lib/libclang.so"
check "LIBCLANG_PATH is searched too" "" \
  "$(FJORD_LIBCLANG_DIRS="$tmp/nowhere" LIBCLANG_PATH="$tmp/lib" bash -c 'source scripts/setup.sh && fjord_missing_packages')"

# The caller's arguments must not become packages: standalone.sh is run as
# `standalone.sh --data-dir fjord-data`, and a sourced script sees the caller's "$@".
rm -f "$tmp/apt-calls" "$tmp/lib"/*
: >"$tmp/lib/libclang-cpp.so.14"
if [ "$(id -u)" = 0 ]; then
  PATH="$tmp/bin:$PATH" FJORD_LIBCLANG_DIRS="$tmp/lib" LIBCLANG_PATH="" \
    bash -c 'set -- --data-dir fjord-data --listen 127.0.0.1:9090; source scripts/setup.sh && fjord_setup' 2>/dev/null
  # g++ and make are on every machine these tests run on; only libclang is faked away.
  check "apt-get installs libclang-dev, and only what is missing" "install -y -qq libclang-dev" \
    "$(grep '^install' "$tmp/apt-calls" || true)"
  check "the caller's arguments never reach apt-get" "" "$(grep -e '--data-dir\|--listen' "$tmp/apt-calls" || true)"
  rm -f "$tmp/apt-calls"
  PATH="$tmp/bin:$PATH" FJORD_LIBCLANG_DIRS="$tmp/lib" LIBCLANG_PATH="" \
    bash -c 'source scripts/setup.sh && fjord_setup some-extra-package' 2>/dev/null
  check "extra packages named by the caller are installed" "install -y -qq libclang-dev some-extra-package" \
    "$(grep '^install' "$tmp/apt-calls" || true)"
  rm -f "$tmp/apt-calls"
  : >"$tmp/lib/libclang.so.1"
  PATH="$tmp/bin:$PATH" FJORD_LIBCLANG_DIRS="$tmp/lib" LIBCLANG_PATH="" \
    bash -c 'set -- --data-dir x; source scripts/setup.sh && fjord_setup'
  check "nothing missing: apt-get is not run at all" "no" "$([ -e "$tmp/apt-calls" ] && echo yes || echo no)"
else
  echo "skip: apt-get paths need root (setup installs only as root)"
fi

# Sourcing alone does nothing (no install, no exit): only fjord_setup acts.
check "sourcing setup.sh runs nothing" "sourced" \
  "$(PATH="$tmp/bin:$PATH" bash -c 'set -- --data-dir x; source scripts/setup.sh; echo sourced')"

[ "$failures" = 0 ] || { echo "setup-test: $failures failure(s)" >&2; exit 1; }
echo "setup-test: all checks passed"
