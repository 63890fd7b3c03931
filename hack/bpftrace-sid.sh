#!/usr/bin/env bash
# The current bpftrace (Debian sid's package), run on this host from a cached chroot: the reference
# the compatibility tests compare kubectl-pytrace with. Run as root.
#
#   hack/bpftrace-sid.sh --root        builds the chroot if needed and prints its directory
#   hack/bpftrace-sid.sh ARGS...       runs `bpftrace ARGS...` inside it
#
# The chroot is made once with `debootstrap --variant=minbase --include=bpftrace,... sid` under
# $PYTRACE_CACHE/bpftrace-sid/<key>/ (key: suite, mirror, packages and this recipe's version), under
# a lock, as hack/base-image.sh makes the base image. Each run happens in a mount namespace of its
# own (unshare -m), where /proc, /sys (with tracefs and debugfs, mounted first when missing), /dev
# and the directories of the traced binaries are bind-mounted into the chroot at their own paths;
# the mounts vanish with the process. Uprobes attach by inode, so a probe on /tmp/x/calls set
# inside the chroot fires for the host's processes running that file.
#
# Environment:
#   PYTRACE_CACHE      cache directory                          default /var/cache/kubectl-pytrace
#   PYTRACE_MIRROR     Debian mirror                            default http://deb.debian.org/debian
#   PYTRACE_SID_BINDS  colon-separated directories to bind-mount, default /tmp:$PWD
# To take a newer bpftrace, delete $PYTRACE_CACHE/bpftrace-sid/.
set -euo pipefail

CACHE=${PYTRACE_CACHE:-/var/cache/kubectl-pytrace}/bpftrace-sid
MIRROR=${PYTRACE_MIRROR:-http://deb.debian.org/debian}
SUITE=sid
PACKAGES=bpftrace,libc6-dev,linux-libc-dev
RECIPE=1   # bump when the way the chroot is made changes

say() { echo "bpftrace-sid.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and BPF)"

key=$(printf 'recipe=%s\nsuite=%s\nmirror=%s\npackages=%s\n' "$RECIPE" "$SUITE" "$MIRROR" "$PACKAGES" |
  sha256sum | cut -c1-12)
root="$CACHE/$key/root"

build() {
  mkdir -p "$CACHE/$key"
  exec 9>"$CACHE/$key.lock"
  flock -w 1800 9 || die "another bpftrace-sid.sh held $CACHE/$key.lock for 30 min"
  [ -x "$root/usr/bin/bpftrace" ] && return 0
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "apt-get install debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  local tmp
  tmp=$(mktemp -d "$CACHE/$key/rootfs.XXXXXX")
  trap 'rm -rf --one-file-system "$tmp"' EXIT
  local t0=$SECONDS
  say "debootstrap --variant=minbase --include=$PACKAGES $SUITE (log: $CACHE/$key/debootstrap.log)"
  if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$MIRROR" \
      >"$CACHE/$key/debootstrap.log" 2>&1; then
    tail -n 20 "$CACHE/$key/debootstrap.log" >&2
    die "debootstrap failed; see $CACHE/$key/debootstrap.log"
  fi
  rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
  mv "$tmp" "$root"
  trap - EXIT
  say "$(chroot "$root" /usr/bin/bpftrace --version) in $root, made in $((SECONDS - t0))s"
}

[ -x "$root/usr/bin/bpftrace" ] || build

if [ "${1:-}" = "--root" ]; then
  echo "$root"
  exit 0
fi

# tracefs and debugfs: bpftrace needs them, this VM does not mount them at boot
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
mountpoint -q /sys/kernel/debug || mount -t debugfs nodev /sys/kernel/debug 2>/dev/null || true

binds=${PYTRACE_SID_BINDS:-/tmp:$PWD}
exec unshare --mount --propagation private -- /bin/bash -c '
  set -e
  root=$1; binds=$2; shift 2
  for d in /proc /sys /dev; do mount --rbind "$d" "$root$d"; done
  IFS=: read -r -a dirs <<<"$binds"
  for d in "${dirs[@]}"; do
    [ -d "$d" ] && [ "$d" != / ] || continue
    mkdir -p "$root$d"
    mount --rbind "$d" "$root$d"
  done
  exec chroot "$root" /usr/bin/env -u LD_LIBRARY_PATH sh -c "cd \"\$0\" 2>/dev/null; exec /usr/bin/bpftrace \"\$@\"" "$PWD" "$@"
' bpftrace-sid "$root" "$binds" "$@"
