#!/usr/bin/env bash
# A kind cluster (one control-plane, two workers: Docker containers on this machine) for the
# plugin's end-to-end tests, which then run against it through KUBECONFIG like against any cluster.
#
#   hack/kind.sh up           create the cluster (if missing), load the tracer, workload and postgres images
#   hack/kind.sh load         rebuild and load the images only (after changing the package)
#   hack/kind.sh down         delete the cluster and its network, then check that nothing is left
#   hack/kind.sh leftovers    what of the cluster exists on this machine (exit 1 if anything)
#   hack/kind.sh env          KUBECONFIG=... lines: eval "$(hack/kind.sh env)" && .venv/bin/pytest -m cluster
#   hack/kind.sh test [ARGS]  up, the plugin's e2e tests (tests/cluster/test_plugin*.py and
#                             test_kind*.py, or pytest ARGS) against it, down; what CI runs
#   hack/kind.sh node-image   build (or find) the node image; print its name
#
# Runs as root. Nothing is downloaded but Debian packages and Go modules (docs/cluster.md):
#   kind          v0.33.0 built from the Go module proxy (sigs.k8s.io/kind), or $PYTRACE_KIND
#   node image    built here (hack/kind/node/Dockerfile), unless $PYTRACE_KIND_NODE_IMAGE names one
#                 (e.g. kindest/node:v1.34.0 on a machine that can pull it: the plain kind path)
#   docker        Debian's /usr/bin/docker (hack/docker.sh starts an engine when none answers),
#                 through hack/kind/bin/docker (kind's --privileged where root lacks capabilities)
#
# Environment: PYTRACE_KIND_CLUSTER (name, default pytrace), PYTRACE_KIND_NETWORK (the Docker
# network, default pytrace-kind), PYTRACE_KIND_NODE_IMAGE, PYTRACE_KIND, PYTRACE_CACHE_DIR
# (default /var/cache/kubectl-pytrace), PYTRACE_KIND_KEEP=1 (`test` leaves the cluster up).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=${PYTRACE_KIND_CLUSTER:-pytrace}
NETWORK=${PYTRACE_KIND_NETWORK:-pytrace-kind}
KIND_VERSION=v0.33.0
CRICTL_VERSION=v1.34.0
# The Kubernetes release: hack/cluster.sh's (its binaries are reused).
K8S_VERSION=$(sed -n 's/^K8S_VERSION=\(v[0-9.]*\).*/\1/p' "$REPO/hack/cluster.sh")
CACHE_ROOT=${PYTRACE_CACHE_DIR:-/var/cache/kubectl-pytrace}
K8S_BIN=$CACHE_ROOT/k8s-$K8S_VERSION/bin
KIND_CACHE=$CACHE_ROOT/kind
STATE=/var/lib/pytrace-kind/$NAME # what `down` must find gone (node IDs, volumes, links)
KUBECONFIG_FILE=/var/lib/pytrace-kind/$NAME.kubeconfig
# Pods of hack/cluster.sh live in 10.244.0.0/24 and its Services in 10.96.0.0/24 on this machine:
# the kind cluster keeps out of both (its addresses exist only inside the node containers, but a
# route or a log line should never be ambiguous).
POD_SUBNET=10.245.0.0/16
SERVICE_SUBNET=10.97.0.0/16
# The images the tests use: the tracer is built from this checkout under a tag of its own (the
# shared Docker engine's localhost/kubectl-pytrace/tracer:dev belongs to whoever built last) and
# tagged inside the nodes as the names the plugin and the tests use.
TRACER_IMAGE=localhost/kubectl-pytrace/tracer:dev
WORKLOAD_IMAGE=localhost/kubectl-pytrace/workload:dev
POSTGRES_IMAGE=localhost/kubectl-pytrace/postgres:dev
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/kubectl_pytrace/__init__.py")
RELEASE_IMAGE=ghcr.io/kubectl-pytrace/tracer:v$VERSION
KIND_TRACER_IMAGE=localhost/kubectl-pytrace/tracer:kind-$NAME
GO=${GO:-/usr/local/go/bin/go}
# Debian packages of the node image (hack/base-image.sh) and of the kube-proxy image
NODE_PACKAGES=(systemd systemd-sysv containerd runc containernetworking-plugins iptables nftables
  conntrack iproute2 ethtool kmod procps ca-certificates libseccomp2 pigz)
PROXY_PACKAGES=(iptables nftables conntrack)
NODE_RECIPE=1 # bump when the way the node image is assembled changes

log() { printf '[kind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf 'kind.sh: error: %s\n' "$*" >&2
  exit 1
}
need_root() { [ "$(id -u)" = 0 ] || die "must run as root (Docker, debootstrap, the Kubernetes build)"; }

DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker || echo /usr/bin/docker)
docker_() { "$DOCKER" "$@"; }

ensure_docker() {
  docker_ info >/dev/null 2>&1 && return 0
  "$REPO/hack/docker.sh" up >&2 || die "no Docker engine answers and hack/docker.sh up failed"
}

find_go() {
  [ -x "$GO" ] || GO=$(command -v go || true)
  [ -n "$GO" ] && [ -x "$GO" ] || die "the Go toolchain is needed (looked for /usr/local/go/bin/go and go in PATH)"
}

go_build() { # go_build DIR OUT PKG... : a static build in module DIR, as hack/cluster.sh builds
  local dir=$1 out=$2
  shift 2
  (cd "$dir" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
    "$GO" build -trimpath -ldflags "${LDFLAGS:--s -w}" -o "$out" "$@")
}

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# ---------------------------------------------------------------------------------------------
# kind itself

kind_bin() {
  if [ -n "${PYTRACE_KIND:-}" ]; then
    echo "$PYTRACE_KIND"
    return
  fi
  local bin=$KIND_CACHE/bin/kind-$KIND_VERSION
  if [ ! -x "$bin" ]; then
    find_go
    mkdir -p "$KIND_CACHE/bin"
    local tmp start=$SECONDS
    tmp=$(mktemp -d "$KIND_CACHE/bin/tmp.XXXXXX")
    log "go install sigs.k8s.io/kind@$KIND_VERSION"
    GOBIN=$tmp GOTOOLCHAIN=local CGO_ENABLED=0 "$GO" install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION" >&2 ||
      { rm -rf "$tmp"; die "go install sigs.k8s.io/kind@$KIND_VERSION failed"; }
    mv "$tmp/kind" "$bin"
    rm -rf "$tmp"
    log "kind $KIND_VERSION built in $((SECONDS - start))s"
  fi
  echo "$bin"
}

# kind with our docker first on its PATH and its own Docker network
kind_() {
  local kind
  kind=$(kind_bin)
  PATH="$REPO/hack/kind/bin:$PATH" PYTRACE_REAL_DOCKER="$DOCKER" KIND_EXPERIMENTAL_DOCKER_NETWORK="$NETWORK" \
    "$kind" "$@"
}

# ---------------------------------------------------------------------------------------------
# The node image

node_image_key() {
  {
    echo "recipe=$NODE_RECIPE k8s=$K8S_VERSION crictl=$CRICTL_VERSION packages=${NODE_PACKAGES[*]} proxy=${PROXY_PACKAGES[*]}"
    find "$REPO/hack/kind/node" "$REPO/hack/kind/k8s" "$REPO/hack/kind/etcd" "$REPO/hack/kind/coredns" \
      -type f -print0 | sort -z | xargs -0 sha256sum | sed "s|$REPO/||"
    sha256sum "$REPO/hack/k8s/go.sum" "$REPO/hack/k8s/image_tar.py" "$REPO"/hack/k8s/cmd/*/*.go | sed "s|$REPO/||"
  } | sha256sum | cut -c1-16
}

# kubeadm and pytrace-kindnet (hack/kind/k8s), etcd, CoreDNS, crictl: each cached by its sources
build_tools() { # prints the directory holding all of them
  local dir=$KIND_CACHE/tools-$1
  if [ -x "$dir/kubeadm" ] && [ -x "$dir/pytrace-kindnet" ] && [ -x "$dir/etcd" ] && [ -x "$dir/coredns" ] &&
    [ -x "$dir/crictl" ]; then
    echo "$dir"
    return
  fi
  find_go
  mkdir -p "$KIND_CACHE"
  local tmp start=$SECONDS minor p ld="-s -w"
  tmp=$(mktemp -d "$KIND_CACHE/tools.tmp.XXXXXX")
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "building kubeadm, pytrace-kindnet, etcd, CoreDNS and crictl (cold: ~5 min on 2 cores; log: $KIND_CACHE/tools-build.log)"
  {
    LDFLAGS=$ld go_build "$REPO/hack/kind/k8s" "$tmp/" k8s.io/kubernetes/cmd/kubeadm ./cmd/pytrace-kindnet &&
      go_build "$REPO/hack/kind/etcd" "$tmp/etcd" go.etcd.io/etcd/server/v3 &&
      go_build "$REPO/hack/kind/coredns" "$tmp/coredns" . &&
      GOBIN=$tmp GOTOOLCHAIN=local CGO_ENABLED=0 "$GO" install -trimpath -ldflags "-s -w" \
        "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  } >"$KIND_CACHE/tools-build.log" 2>&1 ||
    { tail -n 30 "$KIND_CACHE/tools-build.log" >&2; rm -rf "$tmp"; die "building the node image's tools failed"; }
  chmod 755 "$tmp"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  log "tools built in $((SECONDS - start))s"
  echo "$dir"
}

image_tar() { # image_tar OUT TAG ARGS...: a one-layer image written without Docker
  [ -s "$1" ] && return 0
  /usr/bin/python3 "$REPO/hack/k8s/image_tar.py" --out "$1.tmp" --tag "$2" "${@:3}" && mv "$1.tmp" "$1"
}

# The images kubeadm and kind deploy, as tars for the node image's containerd. Static Go binaries
# become one-layer images; kube-proxy needs iptables, nft and conntrack: a Debian base.
build_images() { # build_images DIR TOOLS PAUSE
  local dir=$1 tools=$2 pause=$3 proxy_base
  mkdir -p "$dir"
  image_tar "$dir/kube-apiserver.tar" "registry.k8s.io/kube-apiserver:$K8S_VERSION" \
    --file "$K8S_BIN/kube-apiserver:/usr/local/bin/kube-apiserver" --entrypoint /usr/local/bin/kube-apiserver
  image_tar "$dir/kube-controller-manager.tar" "registry.k8s.io/kube-controller-manager:$K8S_VERSION" \
    --file "$K8S_BIN/kube-controller-manager:/usr/local/bin/kube-controller-manager" \
    --entrypoint /usr/local/bin/kube-controller-manager
  image_tar "$dir/kube-scheduler.tar" "registry.k8s.io/kube-scheduler:$K8S_VERSION" \
    --file "$K8S_BIN/kube-scheduler:/usr/local/bin/kube-scheduler" --entrypoint /usr/local/bin/kube-scheduler
  image_tar "$dir/etcd.tar" "registry.k8s.io/etcd:$(kubeadm_image_tag etcd)" \
    --file "$tools/etcd:/usr/local/bin/etcd" --entrypoint /usr/local/bin/etcd
  image_tar "$dir/coredns.tar" "registry.k8s.io/coredns/coredns:$(kubeadm_image_tag coredns)" \
    --file "$tools/coredns:/coredns" --entrypoint /coredns
  image_tar "$dir/pause.tar" "registry.k8s.io/pause:$(kubeadm_image_tag pause)" \
    --file "$pause:/pause" --entrypoint /pause
  image_tar "$dir/kindnet.tar" "localhost/kubectl-pytrace/kindnet:dev" \
    --file "$tools/pytrace-kindnet:/bin/pytrace-kindnet" --entrypoint /bin/pytrace-kindnet
  if [ ! -s "$dir/kube-proxy.tar" ]; then
    proxy_base=$("$REPO/hack/base-image.sh" "${PROXY_PACKAGES[@]}") || die "hack/base-image.sh ${PROXY_PACKAGES[*]} failed"
    local ctx
    ctx=$(mktemp -d)
    cp "$K8S_BIN/kube-proxy" "$ctx/"
    printf 'ARG BASE\nFROM ${BASE}\nCOPY kube-proxy /usr/local/bin/kube-proxy\n' >"$ctx/Dockerfile"
    docker_ build -q --build-arg "BASE=$proxy_base" -t "registry.k8s.io/kube-proxy:$K8S_VERSION" "$ctx" >/dev/null ||
      { rm -rf "$ctx"; die "docker build of the kube-proxy image failed"; }
    rm -rf "$ctx"
    docker_ save -o "$dir/kube-proxy.tar.tmp" "registry.k8s.io/kube-proxy:$K8S_VERSION"
    mv "$dir/kube-proxy.tar.tmp" "$dir/kube-proxy.tar"
  fi
}

# The tag of a kubeadm image (etcd, coredns, pause) as this kubeadm expects it.
kubeadm_image_tag() {
  local tag
  tag=$("$TOOLS/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null |
    awk -F: -v n="$1" '{ split($1, p, "/"); if (p[length(p)] == n) print $2 }')
  [ -n "$tag" ] || die "kubeadm config images list names no $1 image"
  echo "$tag"
}

node_image() { # prints the node image's name, building it when missing
  if [ -n "${PYTRACE_KIND_NODE_IMAGE:-}" ]; then
    echo "$PYTRACE_KIND_NODE_IMAGE"
    return
  fi
  local key image
  key=$(node_image_key)
  image=localhost/kubectl-pytrace/kind-node:$K8S_VERSION-$key
  if docker_ image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    return
  fi
  need_root
  mkdir -p "$KIND_CACHE"
  exec 8>"$KIND_CACHE/.node-image.lock"
  flock 8
  if docker_ image inspect "$image" >/dev/null 2>&1; then
    exec 8>&-
    echo "$image"
    return
  fi
  local start=$SECONDS
  log "building the node image $image"
  # the Kubernetes components and pause, as hack/cluster.sh builds them (cached there)
  "$REPO/hack/cluster.sh" build >&2 || die "hack/cluster.sh build failed"
  # pause: hack/cluster.sh's tools directory, named by the hash of its sources (as it names it)
  local pause
  pause=$CACHE_ROOT/k8s-$K8S_VERSION/tools-$(hash_of "$REPO/hack/k8s/go.sum" "$REPO"/hack/k8s/cmd/*/*.go)/pause
  [ -x "$pause" ] || die "hack/cluster.sh build made no $pause"
  TOOLS=$(build_tools "$(hash_of "$REPO/hack/kind/k8s/go.sum" "$REPO"/hack/kind/k8s/cmd/*/*.go \
    "$REPO/hack/kind/etcd/go.sum" "$REPO/hack/kind/coredns/go.sum" "$REPO/hack/kind/coredns/main.go" \
    <(echo "$K8S_VERSION $CRICTL_VERSION"))")
  local base ctx
  base=$("$REPO/hack/base-image.sh" "${NODE_PACKAGES[@]}") || die "hack/base-image.sh (node packages) failed"
  ctx=$KIND_CACHE/context-$key
  rm -rf "$ctx"
  mkdir -p "$ctx/bin"
  build_images "$KIND_CACHE/images-$key" "$TOOLS" "$pause"
  cp -r "$REPO/hack/kind/node/files" "$REPO/hack/kind/node/Dockerfile" "$REPO/hack/kind/node/preload.sh" "$ctx/"
  cp -rl "$KIND_CACHE/images-$key" "$ctx/images"
  cp "$K8S_BIN/kubelet" "$K8S_BIN/kubectl" "$TOOLS/kubeadm" "$TOOLS/crictl" "$ctx/bin/"
  DOCKER_BUILDKIT=1 docker_ build --build-arg "BASE_IMAGE=$base" --label "org.kubectl-pytrace.kind-node=$key" \
    -t "$image" "$ctx" >"$KIND_CACHE/node-image-build.log" 2>&1 ||
    { tail -n 30 "$KIND_CACHE/node-image-build.log" >&2; die "docker build of the node image failed (log: $KIND_CACHE/node-image-build.log)"; }
  rm -rf "$ctx"
  exec 8>&-
  log "node image $image built in $((SECONDS - start))s ($(docker_ image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
  echo "$image"
}

# ---------------------------------------------------------------------------------------------
# The cluster

exists() { kind_ get clusters 2>/dev/null | grep -qxF "$NAME"; }

node_containers() { docker_ ps -a -q --filter "label=io.x-k8s.kind.cluster=$NAME"; }

kind_config() {
  cat <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  podSubnet: $POD_SUBNET
  serviceSubnet: $SERVICE_SUBNET
nodes:
EOF
  local role
  for role in control-plane worker worker; do
    echo "- role: $role"
    # kernel headers for BCC on the nodes (kind mounts /lib/modules itself)
    [ -d /usr/src ] && echo "  extraMounts: [{hostPath: /usr/src, containerPath: /usr/src, readOnly: true}]"
  done
}

kubectl_() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

all_nodes_ready() {
  local out
  out=$(kubectl_ --request-timeout=10s get nodes -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null) || return 1
  [ "$(grep -c '^True$' <<<"$out")" = 3 ] && ! grep -qv '^True$' <<<"$out"
}

poll() { # poll SECONDS CMD...: until CMD succeeds (0) or SECONDS of wall time have passed (1)
  local deadline=$((SECONDS + $1))
  shift
  while ((SECONDS < deadline)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

wait_for() { # wait_for SECONDS WHAT CMD...
  local secs=$1 what=$2
  shift 2
  poll "$secs" "$@" || die "timed out after ${secs}s waiting for $what"
}

# What `down` must find gone afterwards, recorded while the cluster runs: the node containers, their
# volumes, the host ends of their network links, the Docker network.
record_state() {
  mkdir -p "$STATE"
  local ids id
  ids=$(node_containers)
  printf '%s\n' $ids >"$STATE/containers"
  : >"$STATE/volumes"
  : >"$STATE/links"
  : >"$STATE/rootfs"
  for id in $ids; do
    docker_ inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}}{{"\n"}}{{end}}{{end}}' "$id" | sed '/^$/d' >>"$STATE/volumes"
    docker_ inspect -f '{{.GraphDriver.Data.MergedDir}}' "$id" >>"$STATE/rootfs" 2>/dev/null || true
    # the host end of the node's eth0: its peer's interface index
    docker_ exec "$id" cat /sys/class/net/eth0/iflink >>"$STATE/links" 2>/dev/null || true
  done
  docker_ network inspect -f '{{.Id}}' "$NETWORK" >"$STATE/network" 2>/dev/null || : >"$STATE/network"
  for id in $ids; do bpf_programs_of "$id"; done | awk '{print $3}' >>"$STATE/bpf"
}

cmd_up() {
  need_root
  ensure_docker
  local start=$SECONDS image
  image=$(node_image)
  mkdir -p "$(dirname "$KUBECONFIG_FILE")"
  local reuse=
  if exists && [ "$(docker_ ps -q --filter "label=io.x-k8s.kind.cluster=$NAME" | wc -l)" = 3 ]; then
    log "cluster $NAME exists"
    kind_ export kubeconfig --name "$NAME" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1
    # a cluster whose nodes were restarted (a reboot, a restart of Docker) may never answer again
    if poll 60 all_nodes_ready; then
      reuse=1
    else
      log "cluster $NAME does not answer with 3 nodes Ready: deleting it first"
      cmd_down
    fi
  fi
  if [ -z "$reuse" ]; then
    if exists || [ -n "$(node_containers)" ]; then
      log "cluster $NAME is incomplete: deleting it first"
      cmd_down
    fi
    local cfg
    cfg=$(mktemp)
    kind_config >"$cfg"
    log "kind create cluster --name $NAME --image $image (1 control-plane, 2 workers; Docker network $NETWORK)"
    if ! kind_ create cluster --name "$NAME" --config "$cfg" --image "$image" --kubeconfig "$KUBECONFIG_FILE" \
      --wait 5m >&2; then
      rm -f "$cfg"
      die "kind create cluster failed"
    fi
    rm -f "$cfg"
  fi
  record_state
  wait_for 300 "3 nodes Ready" all_nodes_ready
  log "3 nodes Ready ($((SECONDS - start))s)"
  cmd_load
  log "up in $((SECONDS - start))s"
  cmd_env
}

cmd_load() {
  need_root
  ensure_docker
  exists || die "no kind cluster named $NAME (hack/kind.sh up)"
  local start=$SECONDS base node tar
  base=$("$REPO/hack/base-image.sh") || die "hack/base-image.sh failed"
  # (the builder hack/images.sh uses, so the two share Docker's layer cache)
  docker_ build -q --build-arg "BASE_IMAGE=$base" -t "$KIND_TRACER_IMAGE" "$REPO" >/dev/null ||
    die "docker build of the tracer image failed"
  # kind load skips the nodes that have this image ID already
  kind_ load docker-image --name "$NAME" "$KIND_TRACER_IMAGE" >&2 || die "kind load docker-image failed"
  for node in $(kind_ get nodes --name "$NAME"); do
    for ref in "$TRACER_IMAGE" "$RELEASE_IMAGE"; do
      docker_ exec "$node" ctr -n k8s.io images tag --force "$KIND_TRACER_IMAGE" "$ref" >/dev/null ||
        die "tagging $ref on $node failed"
    done
  done
  tar=$(PYTRACE_CACHE_DIR=$CACHE_ROOT "$REPO/hack/images.sh" workload-tar) || die "building the workload image failed"
  kind_ load image-archive --name "$NAME" "$tar" >&2 || die "kind load image-archive failed"
  PYTRACE_CACHE_DIR=$CACHE_ROOT PYTRACE_POSTGRES_IMAGE=$POSTGRES_IMAGE "$REPO/hack/images.sh" build postgres ||
    die "building the postgres image failed"
  kind_ load docker-image --name "$NAME" "$POSTGRES_IMAGE" >&2 || die "kind load docker-image $POSTGRES_IMAGE failed"
  log "images loaded in $((SECONDS - start))s"
}

# Everything of the cluster that exists on this machine, one line each ("kind: what"); with the
# state recorded by `up` also what outlived the containers.
leftovers() {
  local id v l net
  for id in $(node_containers); do echo "container: $id ($(docker_ inspect -f '{{.Name}}' "$id"))"; done
  docker_ network inspect "$NETWORK" >/dev/null 2>&1 && echo "network: $NETWORK"
  [ -f "$STATE/volumes" ] && while read -r v; do
    [ -n "$v" ] && docker_ volume inspect "$v" >/dev/null 2>&1 && echo "volume: $v"
  done <"$STATE/volumes"
  [ -f "$STATE/links" ] && while read -r l; do
    [ -n "$l" ] && ip -o link show | grep -q "^$l: " && echo "link: $(ip -o link show | awk -F': ' -v i="$l" '$1 == i {print $2}')"
  done <"$STATE/links"
  [ -s "$STATE/network" ] && net=$(cut -c1-12 "$STATE/network") && ip link show "br-$net" >/dev/null 2>&1 &&
    echo "link: br-$net (the network's bridge)"
  [ -f "$STATE/rootfs" ] && while read -r v; do
    [ -n "$v" ] && awk -v m="$v" '$5 == m {found = 1} END {exit !found}' /proc/self/mountinfo && echo "mount: $v (a node's root)"
  done <"$STATE/rootfs"
  [ -f "$STATE/containers" ] && while read -r id; do
    [ -n "$id" ] || continue
    # mounts (rootfs, volumes) and cgroups named after a node container
    grep -F "$id" /proc/self/mountinfo | awk '{print "mount: " $5}'
    find /sys/fs/cgroup -maxdepth 3 -type d -name "*$id*" 2>/dev/null | sed 's/^/cgroup: /'
    # BPF programs held by processes of a node (their host PIDs are in its cgroup)
    bpf_programs_of "$id"
  done <"$STATE/containers"
  # programs that processes of the nodes held when the state was recorded (ids are never reused)
  [ -f "$STATE/bpf" ] && command -v bpftool >/dev/null && while read -r id; do
    [ -n "$id" ] && bpftool prog show id "$id" >/dev/null 2>&1 && echo "bpf: program $id is still loaded"
  done < <(sort -u "$STATE/bpf")
  [ -f "$KUBECONFIG_FILE" ] && echo "file: $KUBECONFIG_FILE"
  return 0
}

bpf_programs_of() { # bpf_programs_of CONTAINER-ID: "bpf: program N (comm, pid P)" per program a process in it holds
  # (from each process's file descriptors: this bpftool lists no holders)
  local f pid fd link id
  for f in /proc/[0-9]*/cgroup; do
    grep -qF "/docker/$1" "$f" 2>/dev/null || continue
    pid=${f#/proc/}
    pid=${pid%/cgroup}
    for fd in /proc/"$pid"/fd/*; do
      link=$(readlink "$fd" 2>/dev/null) || continue
      [ "$link" = anon_inode:bpf-prog ] || continue
      id=$(awk '$1 == "prog_id:" {print $2}' "/proc/$pid/fdinfo/${fd##*/}" 2>/dev/null)
      [ -n "$id" ] && echo "bpf: program $id ($(cat "/proc/$pid/comm" 2>/dev/null), pid $pid)"
    done
  done | sort -u
}

cmd_leftovers() {
  local out
  out=$(leftovers)
  [ -z "$out" ] && return 0
  echo "$out"
  return 1
}

cmd_down() {
  need_root
  local start=$SECONDS
  ensure_docker
  # the state to check against, if `up` did not get to record it
  [ -n "$(node_containers)" ] && record_state
  if exists; then
    kind_ delete cluster --name "$NAME" --kubeconfig "$KUBECONFIG_FILE" >&2 || log "kind delete cluster failed"
  fi
  # containers kind no longer lists (a failed create): by their label
  local id
  for id in $(node_containers); do docker_ rm -f -v "$id" >/dev/null 2>&1 || true; done
  # kind leaves its network (shared by all its clusters); ours is named for this one
  if docker_ network inspect "$NETWORK" >/dev/null 2>&1; then
    if [ -z "$(docker_ network inspect -f '{{range .Containers}}{{.Name}} {{end}}' "$NETWORK")" ]; then
      docker_ network rm "$NETWORK" >/dev/null
    else
      log "Docker network $NETWORK still has containers of others: left"
    fi
  fi
  rm -f "$KUBECONFIG_FILE"
  local out
  out=$(leftovers)
  if [ -n "$out" ]; then
    echo "$out" >&2
    die "hack/kind.sh down left the above behind"
  fi
  rm -rf "$STATE"
  rmdir "$(dirname "$STATE")" 2>/dev/null || true
  log "down in $((SECONDS - start))s: nothing left"
}

cmd_env() {
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  echo "export PYTRACE_KUBECTL=$K8S_BIN/kubectl"
  echo "export PYTRACE_KIND_CLUSTER=$NAME"
  echo "export PYTRACE_TRACER_IMAGE=$TRACER_IMAGE"
  echo "export PYTRACE_WORKLOAD_IMAGE=$WORKLOAD_IMAGE"
  echo "export PYTRACE_POSTGRES_IMAGE=$POSTGRES_IMAGE"
}

cmd_test() {
  need_root
  local rc=0 start=$SECONDS
  local up_start=$SECONDS
  # (subshells: a `die` in up or down ends only that step)
  if ! (cmd_up >/dev/null); then
    log "up failed: removing what it made"
    (cmd_down) || true
    return 1
  fi
  local up_took=$((SECONDS - up_start)) test_start=$SECONDS
  local args=("$@")
  [ "${#args[@]}" = 0 ] && args=(-m cluster "$REPO"/tests/cluster/test_plugin*.py "$REPO"/tests/cluster/test_kind*.py)
  (
    eval "$(cmd_env)"
    export PYTRACE_KEEP_DOCKER=1
    cd "$REPO" && .venv/bin/pytest -ra "${args[@]}"
  ) || rc=$?
  local test_took=$((SECONDS - test_start)) down_start=$SECONDS
  if [ "${PYTRACE_KIND_KEEP:-0}" != 1 ]; then
    (cmd_down) || rc=1
  fi
  log "kind: up ${up_took}s, tests ${test_took}s, down $((SECONDS - down_start))s, all $((SECONDS - start))s"
  return $rc
}

case "${1:-}" in
up) cmd_up ;;
load) cmd_load ;;
down) cmd_down ;;
leftovers) cmd_leftovers ;;
env) cmd_env ;;
test)
  shift
  cmd_test "$@"
  ;;
node-image)
  need_root
  ensure_docker
  node_image
  ;;
*)
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
