#!/usr/bin/env bash
# Builds the Docker images of the compose cluster on this machine, with no registry:
#
#   fjord-base:bookworm  a Debian bookworm root filesystem made by debootstrap (minbase)
#                        plus ZooKeeper (and its JRE), nginx-light, curl, procps, iproute2;
#                        `docker import`ed. ZooKeeper and the load balancer run from it.
#   fjord:local          FROM fjord-base:bookworm, adds the fjord binary (storage nodes
#                        and gateways).
#
# The root filesystem is cached as a tarball under ${XDG_CACHE_HOME:-~/.cache}/fjord/compose/,
# named by a hash of its recipe (suite, mirror, packages, the build function below), so a
# second run only re-imports when the image is missing or differs (label fjord.base.sha256
# holds the tarball's sha256), and only rebuilds fjord:local when the binary or the base
# changed (labels fjord.bin.sha256, fjord.base.sha256, fjord.bin.stripped).
#
# Environment:
#   FJORD_BIN            the fjord binary (default ${CARGO_TARGET_DIR:-~/.cache/fjord/target}/release/fjord)
#   FJORD_IMAGE          tag of the fjord image (default fjord:local)
#   FJORD_BASE_IMAGE     tag of the base image (default fjord-base:bookworm)
#   FJORD_BASE_REFRESH=1 rebuild the root filesystem even if cached (e.g. for security updates)
#   FJORD_DEBIAN_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   FJORD_SKIP_FJORD_IMAGE=1  build the base image only (no binary needed)
#   FJORD_IMAGE_STRIP=0  put the binary in the image as it is (default: without debug info)
#
# Needs root (debootstrap, chroot, mount) and the Docker engine. Installs debootstrap with
# apt-get if it is missing.
set -euo pipefail

suite=bookworm
mirror="${FJORD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${FJORD_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# Everything the images run. Adding a role (e.g. Prometheus: `prometheus`) starts here.
packages=(
  libstdc++6 libgcc-s1 ca-certificates curl procps iproute2
  zookeeper default-jre-headless
  nginx-light
)
base_image="${FJORD_BASE_IMAGE:-fjord-base:bookworm}"
fjord_image="${FJORD_IMAGE:-fjord:local}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/fjord/compose"
here="$(cd "$(dirname "$0")" && pwd)"
export DOCKER_BUILDKIT=0 # the classic builder: uses the local base image, needs no buildx

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

# Builds the root filesystem in $1 (an empty directory). Its text is part of the cache key.
build_rootfs() {
  local root="$1"
  mkdir -p "$cache/debs"
  debootstrap --variant=minbase --cache-dir="$cache/debs" "$suite" "$root" "$mirror" >&2
  # No documentation, man pages or translations (like Docker's official Debian images).
  cat > "$root/etc/dpkg/dpkg.cfg.d/01-fjord-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
  cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
  cat > "$root/etc/apt/apt.conf.d/01-fjord" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
  # Services must not start inside the chroot while packages are installed.
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  mkdir -p "$cache/apt-archives"
  mount -t proc proc "$root/proc"
  mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"
  mounted+=("$root/var/cache/apt/archives" "$root/proc")
  chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C bash -euc '
    apt-get update -q
    apt-get dist-upgrade -y -q
    apt-get install -y -q "$@"
    # The Debian nginx package enables a site on port 80; the cluster brings its own config.
    rm -f /etc/nginx/sites-enabled/default
    # The user fjord runs as; /data is a storage node'"'"'s data directory (a named volume,
    # which Docker seeds with this ownership).
    groupadd --system --gid 900 fjord
    useradd --system --uid 900 --gid fjord --home-dir /data --no-create-home --shell /usr/sbin/nologin fjord
    mkdir -p /data /etc/fjord
    chown fjord:fjord /data
  ' bash "${packages[@]}" >&2
  unmount_all
  rm -f "$root/usr/sbin/policy-rc.d"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/apt/* "$root"/tmp/*
  # What debootstrap installed before the dpkg excludes were in place.
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
}

mounted=()
unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true; done
  mounted=()
}
work=""
cleanup() {
  unmount_all
  if [ -n "$work" ] && [ -d "$work" ]; then
    # Never delete through a mount point that is still there.
    if grep -q " $work" /proc/mounts; then log "not removing $work: something is still mounted in it"; else rm -rf "$work"; fi
  fi
}
trap cleanup EXIT

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is dockerd running? are you in the docker group?)"

# The fjord binary (checked first, so a missing binary fails before a long base build).
bin=""
if [ "${FJORD_SKIP_FJORD_IMAGE:-0}" != 1 ]; then
  bin="${FJORD_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/fjord/target}/release/fjord}"
  [ -x "$bin" ] || die "no fjord binary at $bin: build it (cargo build --release -p fjord) or set FJORD_BIN"
fi

# --- base image -------------------------------------------------------------------------
recipe_hash="$(printf '%s\n' "$suite" "$mirror" "$security_mirror" "${packages[*]}" "$(declare -f build_rootfs)" | sha256sum | cut -c1-16)"
tarball="$cache/fjord-base-$suite-$recipe_hash.tar"
mkdir -p "$cache"
if [ "${FJORD_BASE_REFRESH:-0}" = 1 ]; then rm -f "$tarball" "$tarball.sha256"; fi
if [ -s "$tarball" ] && [ -s "$tarball.sha256" ]; then
  log "root filesystem: cached $tarball"
else
  [ "$(id -u)" = 0 ] || die "building the root filesystem needs root (debootstrap, chroot, mount): run sudo $0"
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2; }
  fi
  work="$(mktemp -d "$cache/rootfs.XXXXXX")"
  log "root filesystem: debootstrap --variant=minbase $suite + ${packages[*]} (a few minutes)"
  start=$SECONDS
  build_rootfs "$work/root"
  tar --numeric-owner --xattrs -C "$work/root" --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* \
    -cf "$work/rootfs.tar" .
  sha256sum "$work/rootfs.tar" | cut -d' ' -f1 > "$work/rootfs.tar.sha256"
  mv "$work/rootfs.tar.sha256" "$tarball.sha256"
  mv "$work/rootfs.tar" "$tarball"
  rm -rf "$work"
  work=""
  # Older tarballs of other recipes are of no more use.
  find "$cache" -maxdepth 1 -name "fjord-base-$suite-*.tar*" ! -name "$(basename "$tarball")*" -delete
  log "root filesystem: built in $((SECONDS - start)) s, $(du -h "$tarball" | cut -f1)"
fi
base_sha="$(cat "$tarball.sha256")"

# Removes the image a rebuild replaced once no tag names it any more (never by id while
# another tag, e.g. fjord:local and fjord:test of the same build, still names it: that
# would untag both); an image a container still uses stays.
drop_if_untagged() {
  [ -n "$1" ] || return 0
  [ "$(docker image inspect --format '{{len .RepoTags}}' "$1" 2>/dev/null)" = 0 ] || return 0
  docker image rm "$1" >/dev/null 2>&1 || true
}

label() { docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

if [ "$(label "$base_image" fjord.base.sha256)" = "$base_sha" ]; then
  log "$base_image: up to date"
else
  log "$base_image: docker import"
  old_id="$(docker image inspect --format '{{.Id}}' "$base_image" 2>/dev/null || true)"
  docker import \
    --change "LABEL fjord.base.sha256=$base_sha fjord.base.recipe=$recipe_hash" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    "$tarball" "$base_image" >/dev/null
  drop_if_untagged "$old_id"
fi

[ "${FJORD_SKIP_FJORD_IMAGE:-0}" = 1 ] && exit 0

# --- fjord image ------------------------------------------------------------------------
bin_sha="$(sha256sum "$bin" | cut -d' ' -f1)"
strip=0
if [ "${FJORD_IMAGE_STRIP:-1}" = 1 ] && command -v strip >/dev/null; then strip=1; fi
if [ "$(label "$fjord_image" fjord.bin.sha256)" = "$bin_sha" ] && [ "$(label "$fjord_image" fjord.base.sha256)" = "$base_sha" ] &&
  [ "$(label "$fjord_image" fjord.bin.stripped)" = "$strip" ]; then
  log "$fjord_image: up to date ($bin)"
else
  # Shared libraries the binary needs that the base does not have.
  if ldd "$bin" >/dev/null 2>&1; then
    libs="$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $1 } $1 ~ /^\// { print $1 }' | sort -u)"
    log "$bin needs: $(echo $libs)"
    missing="$(docker run --rm "$base_image" bash -c 'for l; do case $l in /*) [ -e "$l" ] || echo "$l";; *) ldconfig -p | grep -q "^[[:space:]]*$l " || echo "$l";; esac; done' bash $libs)"
    [ -z "$missing" ] || die "$base_image lacks shared libraries the binary needs: $missing (add their packages to images.sh)"
  fi
  ctx="$(mktemp -d)"
  work="$ctx"
  cp "$here/image/Dockerfile" "$ctx/Dockerfile"
  # Debug info is most of the binary (442 MB of 468 MB for a release build here) and no use
  # in a container: stripped of it, with symbols kept (backtraces still name functions).
  if [ "$strip" = 1 ]; then
    strip --strip-debug -o "$ctx/fjord" "$bin"
  else
    cp "$bin" "$ctx/fjord"
  fi
  log "$fjord_image: docker build (FROM $base_image, adds $bin)"
  old_id="$(docker image inspect --format '{{.Id}}' "$fjord_image" 2>/dev/null || true)"
  # (The classic builder's deprecation notice is noise here: its output shows on failure only.)
  docker build -q --build-arg "BASE=$base_image" \
    --label "fjord.bin.sha256=$bin_sha" --label "fjord.base.sha256=$base_sha" --label "fjord.bin.stripped=$strip" \
    -t "$fjord_image" "$ctx" >"$ctx/build.log" 2>&1 || { cat "$ctx/build.log" >&2; die "docker build failed"; }
  rm -rf "$ctx"
  work=""
  drop_if_untagged "$old_id"
fi
# The binary runs in the image: no library missing, and it knows its version.
if out="$(docker run --rm "$fjord_image" --version 2>&1)"; then
  log "$fjord_image: $out"
else
  die "the fjord binary does not run in $fjord_image: $out"
fi
