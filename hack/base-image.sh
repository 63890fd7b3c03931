#!/usr/bin/env bash
# Builds a Debian bookworm base image without a registry: `debootstrap --variant=minbase bookworm`
# into a cached root-filesystem tarball, then `docker import` of that tarball. Run as root.
#
#   hack/base-image.sh [PACKAGE...]           prints the image name on stdout, e.g. pytrace-base:bookworm-1a2b3c4d5e6f
#   hack/base-image.sh --tarball [PACKAGE...] prints the cached rootfs tarball's path instead (no Docker needed)
#
# PACKAGEs are added to the minbase set (debootstrap --include). The tag's hash covers everything that
# goes into the root filesystem (suite, variant, mirror, sorted package list, this recipe's version), so
# each package list gets its own tarball and image. Work already done is skipped: an existing image is
# only printed; an existing tarball is only imported. The Docker engine must be running for the image
# (hack/docker.sh up).
#
# Environment:
#   PYTRACE_CACHE    cache directory (outside the repo)    default /var/cache/kubectl-pytrace
#   PYTRACE_MIRROR   Debian mirror                         default http://deb.debian.org/debian
#   PYTRACE_SUITE    Debian suite                          default bookworm
# To rebuild from a newer mirror state, delete $PYTRACE_CACHE/base/ and `docker rmi` the image.
set -euo pipefail

CACHE=${PYTRACE_CACHE:-/var/cache/kubectl-pytrace}/base
MIRROR=${PYTRACE_MIRROR:-http://deb.debian.org/debian}
SUITE=${PYTRACE_SUITE:-bookworm}
VARIANT=minbase
RECIPE=1   # bump when the way the rootfs is made changes
DOCKER=/usr/bin/docker

say() { echo "base-image.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

want_tarball=0
if [ "${1:-}" = "--tarball" ]; then
  want_tarball=1
  shift
fi
for p in "$@"; do
  # Debian package names: lower case, digits, + - . (policy 5.6.1); anything else is refused
  # rather than passed to debootstrap.
  [[ "$p" =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || die "not a Debian package name: '$p'"
done
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and docker import)"

pkgs=$(printf '%s\n' "$@" | sed '/^$/d' | LC_ALL=C sort -u | paste -sd, -)
key=$(printf 'recipe=%s\nsuite=%s\nvariant=%s\nmirror=%s\npackages=%s\n' \
  "$RECIPE" "$SUITE" "$VARIANT" "$MIRROR" "$pkgs" | sha256sum | cut -c1-12)
image="pytrace-base:$SUITE-$key"
tarball="$CACHE/$SUITE-$key.tar"

if [ "$want_tarball" = 0 ]; then
  [ -x "$DOCKER" ] && "$DOCKER" info >/dev/null 2>&1 ||
    die "the Docker engine does not answer; start it with hack/docker.sh up"
  if "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
  fi
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/$SUITE-$key.lock"
flock -w 1800 9 || die "another base-image.sh held $CACHE/$SUITE-$key.lock for 30 min"

if [ ! -s "$tarball" ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "apt-get install debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf --one-file-system "$root" "$tarball.tmp"' EXIT
  t0=$SECONDS
  say "debootstrap --variant=$VARIANT $SUITE${pkgs:+ --include=$pkgs} (log: $CACHE/$SUITE-$key.log)"
  if ! debootstrap --variant="$VARIANT" ${pkgs:+--include="$pkgs"} "$SUITE" "$root" "$MIRROR" \
      >"$CACHE/$SUITE-$key.log" 2>&1; then
    tail -n 20 "$CACHE/$SUITE-$key.log" >&2
    die "debootstrap failed; see $CACHE/$SUITE-$key.log"
  fi
  # Slim the image: package caches and lists are not needed to run (apt-get update refills them).
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  printf '%s\n' "$SUITE $VARIANT ${pkgs:-(no extra packages)} from $MIRROR" >"$root/etc/pytrace-base"
  tar --numeric-owner --xattrs -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf --one-file-system "$root"
  trap - EXIT
  say "rootfs $tarball ($(du -h "$tarball" | cut -f1)) built in $((SECONDS - t0))s"
fi

if [ "$want_tarball" = 1 ]; then
  echo "$tarball"
  exit 0
fi

if ! "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
  t0=$SECONDS
  "$DOCKER" import \
    --change 'CMD ["/bin/bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL org.kubectl-pytrace.base=$SUITE-$key" \
    "$tarball" "$image" >/dev/null
  say "imported $image in $((SECONDS - t0))s"
fi
echo "$image"
