#!/usr/bin/env bash
# Checks the README's two commands on a fresh Debian machine with only the Rust toolchain:
# a container from a plain `debootstrap bookworm` root filesystem (no -dev packages, no
# libclang, no ZooKeeper, no curl), with this machine's rustup toolchain mounted read-only
# and nothing else; a clean clone of HEAD; then
#   ./scripts/standalone.sh --data-dir fjord-data --listen 127.0.0.1:9090   (must serve)
#   ./scripts/test.sh                                                        (must pass)
# each doing its own set-up. Cold builds happen inside (about 30 minutes on 2 cores).
# The root filesystem has ca-certificates (rustup itself needs it, so every machine with
# the toolchain has it). This sandbox reaches the package registries through an
# intercepting proxy whose CA only the host trusts: the host's CA bundle is mounted in for
# that, and for nothing else.
# Not part of CI (too slow); run it after changing set-up. Usage: scripts/fresh-machine-check.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/fjord/fresh"
image=fjord-fresh:bookworm
name="fjord-fresh-check-$$"
mkdir -p "$cache"

if ! docker image inspect "$image" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  if [ ! -s "$cache/rootfs.tar" ]; then
    echo "fresh: debootstrap bookworm (the default variant: what a Debian install has)" >&2
    root="$(mktemp -d)"
    debootstrap --include=ca-certificates bookworm "$root" http://deb.debian.org/debian >/dev/null
    tar -C "$root" -cf "$cache/rootfs.tar.part" . && mv "$cache/rootfs.tar.part" "$cache/rootfs.tar"
    rm -rf "$root"
  fi
  docker import "$cache/rootfs.tar" "$image" >/dev/null
fi

work="$(mktemp -d)"
trap 'docker rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$repo" clone -q --no-hardlinks "$repo" "$work/fjord"

cat >"$work/check.sh" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
export PATH="/root/.cargo/bin:$PATH" RUSTUP_HOME=/toolchain/rustup CARGO_HOME=/root/.cargo
mkdir -p /root/.cargo/bin
for t in /toolchain/cargo/bin/*; do ln -sf "$t" "/root/.cargo/bin/$(basename "$t")"; done
cd /src/fjord
t0=$SECONDS
echo "fresh: ./scripts/standalone.sh --data-dir fjord-data --listen 127.0.0.1:9090" >&2
./scripts/standalone.sh --data-dir fjord-data --listen 127.0.0.1:9090 >/tmp/standalone.log 2>&1 &
pid=$!
ready=0
for _ in $(seq 3600); do
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  if { exec 3<>/dev/tcp/127.0.0.1/9090; } 2>/dev/null; then
    printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
    if head -1 <&3 | grep -q ' 200 '; then ready=1; exec 3>&-; break; fi
    exec 3>&-
  fi
  sleep 1
done
if [ "$ready" != 1 ]; then echo "fresh: standalone.sh did not serve" >&2; tail -50 /tmp/standalone.log >&2; exit 1; fi
echo "fresh: standalone.sh served after $((SECONDS - t0)) s" >&2
kill -TERM "$pid"; wait "$pid" || true
t1=$SECONDS
echo "fresh: ./scripts/test.sh" >&2
./scripts/test.sh >/tmp/test.log 2>&1 || { tail -80 /tmp/test.log >&2; echo "fresh: test.sh FAILED" >&2; exit 1; }
grep -E '^test result' /tmp/test.log | awk '{p+=$4; f+=$6} END {print "fresh: test.sh passed: " p " tests passed, " f " failed"}' >&2
echo "fresh: test.sh took $((SECONDS - t1)) s" >&2
EOF
chmod +x "$work/check.sh"

ca=/sandbox-ca.crt
docker run --name "$name" --rm \
  -v "$HOME/.rustup:/toolchain/rustup:ro" -v "$HOME/.cargo/bin:/toolchain/cargo/bin:ro" \
  -v "/etc/ssl/certs/ca-certificates.crt:$ca:ro" -e PIP_CERT="$ca" -e CARGO_HTTP_CAINFO="$ca" \
  -v "$work:/src" -w /src "$image" /src/check.sh
