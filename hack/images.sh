#!/usr/bin/env bash
# Builds the images the cluster tests use and loads them into the local cluster's containerd
# (hack/cluster.sh), with no registry:
#
#   hack/images.sh build [IMAGE|all]   build (cached) without loading
#   hack/images.sh load  [IMAGE|all]   build if needed, then import into containerd's k8s.io
#                                      namespace (pods use imagePullPolicy Never or IfNotPresent)
#   hack/images.sh save DIR            write tracer.tar and workload.tar into DIR (for kind)
#   hack/images.sh workload-tar        build the workload image tar, print its path
#   hack/images.sh names               print the image references
#
# IMAGE is one of:
# tracer    the top-level Dockerfile, built with Docker (hack/docker.sh starts an engine when none
#           answers; the base image is hack/base-image.sh's debootstrap image, or $PYTRACE_BASE_IMAGE)
# workload  tests/workloads/cluster: a static C program and busybox, written as an image tar by
#           hack/k8s/image_tar.py (no Docker needed)
# postgres  Debian's postgresql-15 (built with --enable-dtrace: USDT probes) on the debootstrap base
#           image (hack/base-image.sh postgresql-15), for the slowqueries program in a pod
# (The pause image is hack/cluster.sh's: it is needed before any pod can run.)
#
# Environment: CTRD_SOCK (containerd socket; default the local cluster's), PYTRACE_BASE_IMAGE,
# PYTRACE_TRACER_IMAGE, PYTRACE_WORKLOAD_IMAGE, PYTRACE_POSTGRES_IMAGE, PYTRACE_CACHE_DIR,
# PYTRACE_DOCKER_NO_CACHE=1 (docker build --no-cache: to measure a cold build).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRACER_IMAGE=${PYTRACE_TRACER_IMAGE:-localhost/kubectl-pytrace/tracer:dev}
# the tracer is also tagged as the image the client uses by default (k8s/manifests.default_image),
# so `kubectl pytrace run` works on the test clusters without --image
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/kubectl_pytrace/__init__.py")
RELEASE_IMAGE=ghcr.io/kubectl-pytrace/tracer:v$VERSION
WORKLOAD_IMAGE=${PYTRACE_WORKLOAD_IMAGE:-localhost/kubectl-pytrace/workload:dev}
POSTGRES_IMAGE=${PYTRACE_POSTGRES_IMAGE:-localhost/kubectl-pytrace/postgres:dev}
CTRD_SOCK=${CTRD_SOCK:-/run/pytrace-cluster/containerd/containerd.sock}
CACHE=${PYTRACE_CACHE_DIR:-/var/cache/kubectl-pytrace}/images
LOADED=/run/pytrace-cluster/images # what was imported into this containerd (gone with `down`)

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf 'images.sh: error: %s\n' "$*" >&2
  exit 1
}

apt_need() { # apt_need PKG...: install the Debian packages that are missing
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" = 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "needs the Debian packages ${missing[*]} (run as root to install them)"
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

docker_cli() {
  if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker || true; fi
}

# ---------------------------------------------------------------------------------------------
# workload: no Docker

# Debian's busybox-static binary, taken from its .deb (installing the package would replace the
# host's busybox).
busybox_static() {
  local out=$CACHE/busybox-static
  if [ ! -x "$out" ]; then
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download busybox-static >/dev/null 2>&1) ||
      { apt-get update -qq && (cd "$tmp" && apt-get download busybox-static >/dev/null); } ||
      die "apt-get download busybox-static failed"
    dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
    cp "$tmp/x/bin/busybox" "$out.tmp" && mv "$out.tmp" "$out"
    rm -rf "$tmp"
  fi
  echo "$out"
}

workload_tar() { # builds (cached by the hash of the sources) and prints the tar's path
  local src=$REPO/tests/workloads/cluster h out bin busybox
  h=$( (cat "$src/ticker.c" "$REPO"/tests/workloads/go/*.go "$REPO"/tests/workloads/go/*.s "$REPO/hack/k8s/image_tar.py" "$REPO/hack/images.sh" &&
    echo "$WORKLOAD_IMAGE") | sha256sum | cut -c1-16)
  out=$CACHE/workload-$h.tar
  if [ ! -f "$out" ]; then
    apt_need gcc libc6-dev
    mkdir -p "$CACHE"
    bin=$(mktemp -d)
    gcc -static -O2 -g -fno-omit-frame-pointer -Wall -o "$bin/ticker" "$src/ticker.c" ||
      die "gcc failed on $src/ticker.c"
    busybox=$(busybox_static)
    # the Go workload (uprobes on Go functions): tests/workloads/go, built with the Go toolchain
    /usr/bin/python3 "$REPO/tests/workloads/go/build.py" "$bin/go" >/dev/null || die "building the Go workload failed"
    local args=(--tag "$WORKLOAD_IMAGE" --out "$out.tmp" --cmd /usr/local/bin/ticker
      --file "$bin/ticker:/usr/local/bin/ticker:0755" --file "$busybox:/bin/busybox:0755"
      --file "$bin/go/goserver:/usr/local/bin/goserver:0755")
    local applet
    for applet in sh ash cat echo ls ps sleep date true false env id hostname grep head tail wc \
      mkdir rm touch kill printf test uname mount nc httpd ip seq; do
      args+=(--symlink "/bin/$applet:busybox")
    done
    /usr/bin/python3 "$REPO/hack/k8s/image_tar.py" "${args[@]}"
    rm -rf "$bin"
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

# ---------------------------------------------------------------------------------------------
# tracer: Docker

ensure_docker() {
  local docker
  docker=$(docker_cli)
  if [ -n "$docker" ] && "$docker" info >/dev/null 2>&1; then return 0; fi
  [ -x "$REPO/hack/docker.sh" ] || die "no Docker engine answers and hack/docker.sh is missing: cannot build the tracer image"
  "$REPO/hack/docker.sh" up >&2 || die "hack/docker.sh up failed: cannot build the tracer image"
}

base_image() {
  if [ -n "${PYTRACE_BASE_IMAGE:-}" ]; then
    echo "$PYTRACE_BASE_IMAGE"
  elif [ -x "$REPO/hack/base-image.sh" ]; then
    "$REPO/hack/base-image.sh" || die "hack/base-image.sh failed"
  else
    echo debian:bookworm
  fi
}

build_tracer() {
  ensure_docker
  local docker base start
  docker=$(docker_cli)
  base=$(base_image)
  start=$(date +%s)
  log "docker build $TRACER_IMAGE (BASE_IMAGE=$base)"
  local nocache=()
  [ "${PYTRACE_DOCKER_NO_CACHE:-0}" = 1 ] && nocache=(--no-cache)
  "$docker" build -q "${nocache[@]}" --build-arg "BASE_IMAGE=$base" -t "$TRACER_IMAGE" -t "$RELEASE_IMAGE" \
    -f "$REPO/Dockerfile" "$REPO" >/dev/null ||
    die "docker build of the tracer image failed (run: docker build --build-arg BASE_IMAGE=$base -t $TRACER_IMAGE $REPO)"
  log "tracer image built in $(($(date +%s) - start))s: $("$docker" image inspect -f '{{.Size}}' "$TRACER_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
}

# postgres: the base image with Debian's postgresql-15, under a name of its own
build_postgres() {
  ensure_docker
  local base
  base=$("$REPO/hack/base-image.sh" postgresql-15) || die "hack/base-image.sh postgresql-15 failed"
  "$(docker_cli)" tag "$base" "$POSTGRES_IMAGE" || die "docker tag $base $POSTGRES_IMAGE failed"
}

# ---------------------------------------------------------------------------------------------
# loading into the cluster's containerd

ctr_() { ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }

have_image() { # (no `ctr | grep -q`: with pipefail, grep's early exit fails the pipeline)
  local refs
  refs=$(ctr_ images ls -q 2>/dev/null) || return 1
  grep -qxF "$1" <<<"$refs"
}

load_tar() { # load_tar NAME REF KEY TAR-or-"-": skip when KEY was loaded already
  local name=$1 ref=$2 key=$3 src=$4
  if [ -f "$LOADED/$name" ] && [ "$(cat "$LOADED/$name")" = "$key" ] && have_image "$ref"; then
    return 0
  fi
  ctr_ images import "$src" >/dev/null || die "ctr images import of $ref failed"
  have_image "$ref" || die "$ref is not in containerd after the import"
  mkdir -p "$LOADED"
  echo "$key" >"$LOADED/$name"
}

load_workload() {
  local tar
  tar=$(workload_tar)
  load_tar workload "$WORKLOAD_IMAGE" "$tar" "$tar"
  log "loaded $WORKLOAD_IMAGE"
}

have_images() { # have_images REF...: all of them are in containerd
  local ref
  for ref in "$@"; do have_image "$ref" || return 1; done
}

load_docker() { # load_docker NAME REF...: Docker's images REF... into containerd, unless loaded already
  local name=$1 docker id start=$SECONDS
  shift
  docker=$(docker_cli)
  id=$("$docker" image inspect -f '{{.Id}}' "$1")
  if [ -f "$LOADED/$name" ] && [ "$(cat "$LOADED/$name")" = "$id" ] && have_images "$@"; then
    return 0
  fi
  "$docker" save "$@" | ctr_ images import - >/dev/null || die "loading $1 into containerd failed"
  have_images "$@" || die "$* not in containerd after the import"
  mkdir -p "$LOADED"
  echo "$id" >"$LOADED/$name"
  log "loaded $* in $((SECONDS - start))s"
}

load_tracer() {
  build_tracer
  load_docker tracer "$TRACER_IMAGE" "$RELEASE_IMAGE"
}

load_postgres() {
  build_postgres
  load_docker postgres "$POSTGRES_IMAGE"
}

what=${2:-all}
case "${1:-}" in build | load)
  case "$what" in tracer | workload | postgres | all) ;; *) die "unknown image '$what' (tracer, workload, postgres or all)" ;; esac
  ;;
esac

case "${1:-}" in
build)
  case "$what" in workload | all) workload_tar >/dev/null ;; esac
  case "$what" in tracer | all) build_tracer ;; esac
  case "$what" in postgres | all) build_postgres ;; esac
  ;;
load)
  [ -S "$CTRD_SOCK" ] || die "no containerd socket at $CTRD_SOCK (is the cluster up? hack/cluster.sh up)"
  case "$what" in workload | all) load_workload ;; esac
  case "$what" in tracer | all) load_tracer ;; esac
  case "$what" in postgres | all) load_postgres ;; esac
  ;;
save)
  dir=${2:?usage: hack/images.sh save DIR}
  mkdir -p "$dir"
  cp "$(workload_tar)" "$dir/workload.tar"
  build_tracer
  "$(docker_cli)" save -o "$dir/tracer.tar" "$TRACER_IMAGE" "$RELEASE_IMAGE"
  echo "$dir/tracer.tar"
  echo "$dir/workload.tar"
  ;;
workload-tar)
  workload_tar
  ;;
names)
  echo "TRACER_IMAGE=$TRACER_IMAGE"
  echo "RELEASE_IMAGE=$RELEASE_IMAGE"
  echo "WORKLOAD_IMAGE=$WORKLOAD_IMAGE"
  echo "POSTGRES_IMAGE=$POSTGRES_IMAGE"
  ;;
*)
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
