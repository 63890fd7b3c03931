#!/usr/bin/env bash
# A single-node Kubernetes cluster on this host, from real components, for the e2e tests.
#
#   hack/cluster.sh up       install what is missing, build (or reuse) the Kubernetes binaries, start
#                            etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
#                            kubelet and kube-proxy, load the images, wait until the node is Ready
#   hack/cluster.sh down     stop everything `up` started (PID files only), remove pods, mounts,
#                            cgroups, the CNI bridge and all state
#   hack/cluster.sh status   what runs, and the node as the API server sees it (exit 1 if not up)
#   hack/cluster.sh env      `export KUBECONFIG=...` and KUBECTL=... lines, for eval
#   hack/cluster.sh build    only build (or find in the cache) the Kubernetes binaries
#   hack/cluster.sh restart-apiserver   stop kube-apiserver and start it again (a test's "API restart")
#   hack/cluster.sh restart-kubelet     the same for the kubelet
#
# Runs as root. Components:
#   etcd, containerd, runc, CNI plugins   Debian packages (installed here when missing)
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl
#                                         built with Go from the k8s.io/kubernetes module pinned in
#                                         hack/k8s/go.mod, cached in $CACHE_ROOT/k8s-$K8S_VERSION
#   pause image, pytrace-cri              built from hack/k8s/cmd (no registry is reachable)
# The cluster's containerd is its own instance (own config, socket, root and state), so it never
# meets the containerd that dockerd uses. See docs/cluster.md.
#
# Environment:
#   PYTRACE_CLUSTER_IMAGES       all (default): build/load the tracer and workload images in `up`;
#                                workload: only the workload image; none: neither
#   PYTRACE_CACHE_DIR            cache root (default /var/cache/kubectl-pytrace)
#   PYTRACE_API_PORT             kube-apiserver port (default 6443)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S_VERSION=v1.34.4 # must match the k8s.io/kubernetes requirement in hack/k8s/go.mod
CACHE_ROOT=${PYTRACE_CACHE_DIR:-/var/cache/kubectl-pytrace}
K8S_CACHE=$CACHE_ROOT/k8s-$K8S_VERSION
BIN=$K8S_CACHE/bin
STATE=/var/lib/pytrace-cluster
RUN=/run/pytrace-cluster
LOGS=/var/log/pytrace-cluster
PKI=$STATE/pki
PIDS=$RUN/pids
CTRD_SOCK=$RUN/containerd/containerd.sock
CRI_ENDPOINT=unix://$CTRD_SOCK
NODE_NAME=pytrace-node
API_PORT=${PYTRACE_API_PORT:-6443}
ETCD_PORT=32379
ETCD_PEER_PORT=32380
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
SERVICE_IP=10.96.0.1
BRIDGE=pytrace0
CGROUP_ROOT=pytrace # the kubelet's --cgroup-root, under every cgroup hierarchy
PAUSE_IMAGE=localhost/kubectl-pytrace/pause:3.10
KUBECONFIG_ADMIN=$STATE/admin.kubeconfig
GO=${GO:-/usr/local/go/bin/go}
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)
APT_PACKAGES=(etcd-server containerd runc containernetworking-plugins iptables nftables conntrack
  openssl curl iproute2 util-linux mount ca-certificates)

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf 'cluster.sh: error: %s\n' "$*" >&2
  exit 1
}
t0=$EPOCHREALTIME
elapsed() { awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it starts a kubelet, containerd and mounts)"; }

# ---------------------------------------------------------------------------------------------
# Packages and binaries

install_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" = 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's postinst scripts would start etcd/containerd with their default configs where an init
  # system runs; policy-rc.d 101 forbids that so only our own instances run.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { [ "$created_policy" = 1 ] && rm -f "$policy"; die "apt-get install ${missing[*]} failed"; }
  [ "$created_policy" = 1 ] && rm -f "$policy"
  return 0
}

k8s_built() {
  local c
  for c in "${COMPONENTS[@]}"; do [ -x "$BIN/$c" ] || return 1; done
  [ -f "$K8S_CACHE/go.sum" ] && cmp -s "$K8S_CACHE/go.sum" "$REPO/hack/k8s/go.sum"
}

# The Kubernetes binaries, keyed by version: a second `up` reuses them.
build_k8s() {
  k8s_built && return 0
  [ -x "$GO" ] || GO=$(command -v go || true)
  [ -n "$GO" ] && [ -x "$GO" ] || die "the Go toolchain is needed to build Kubernetes $K8S_VERSION (looked for /usr/local/go/bin/go and go in PATH)"
  mkdir -p "$K8S_CACHE"
  # One build at a time (two `up`s at once): the second waits and then finds the binaries.
  exec 9>"$K8S_CACHE/.build.lock"
  flock 9
  if k8s_built; then
    exec 9>&-
    return 0
  fi
  local start tmp minor ld p
  start=$(date +%s)
  tmp=$(mktemp -d "$K8S_CACHE/bin.tmp.XXXXXX")
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "building Kubernetes $K8S_VERSION (${COMPONENTS[*]}) with $("$GO" version | cut -d' ' -f3); a cold build takes ~5 min on 2 cores"
  # One `go build` for all components: packages they share are compiled once.
  (cd "$REPO/hack/k8s" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
    "$GO" build -trimpath -ldflags "$ld" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubectl) \
    >"$K8S_CACHE/build.log" 2>&1 ||
    { tail -n 40 "$K8S_CACHE/build.log" >&2; rm -rf "$tmp"; die "go build of Kubernetes $K8S_VERSION failed (log: $K8S_CACHE/build.log)"; }
  chmod 755 "$tmp"
  rm -rf "$BIN"
  mv "$tmp" "$BIN"
  cp "$REPO/hack/k8s/go.sum" "$K8S_CACHE/go.sum"
  echo "$(($(date +%s) - start))" >"$K8S_CACHE/build-seconds"
  log "built Kubernetes $K8S_VERSION in $(($(date +%s) - start))s into $BIN"
  exec 9>&- # (also releases the lock; the daemons started later must not inherit it)
}

# Small helpers of ours (pause, pytrace-cri), keyed by the hash of their sources.
build_tools() {
  TOOLS=$(tools_dir)
  [ -x "$TOOLS/pause" ] && [ -x "$TOOLS/pytrace-cri" ] && return 0
  [ -x "$GO" ] || GO=$(command -v go || true)
  [ -n "$GO" ] && [ -x "$GO" ] || die "the Go toolchain is needed to build hack/k8s/cmd"
  mkdir -p "$K8S_CACHE"
  local tmp
  tmp=$(mktemp -d "$K8S_CACHE/tools.tmp.XXXXXX")
  (cd "$REPO/hack/k8s" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
    "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/" ./cmd/pause ./cmd/pytrace-cri) ||
    { rm -rf "$tmp"; die "go build of hack/k8s/cmd failed"; }
  chmod 755 "$tmp"
  rm -rf "$TOOLS"
  mv "$tmp" "$TOOLS"
}

tools_dir() {
  local h
  h=$(cat "$REPO/hack/k8s/go.sum" "$REPO"/hack/k8s/cmd/*/*.go | sha256sum | cut -c1-16)
  echo "$K8S_CACHE/tools-$h"
}

# ---------------------------------------------------------------------------------------------
# Processes: started detached, with stdio in log files (so a caller's pipes are never held
# open), and remembered as "PID EXE" in $PIDS/NAME.pid. Stopped by that PID only, after checking
# that /proc/PID/exe is still the binary we started.

start_daemon() {
  local name=$1 exe=$2
  shift 2
  mkdir -p "$PIDS" "$LOGS"
  : >"$LOGS/$name.log"
  setsid "$exe" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo "$! $exe" >"$PIDS/$name.pid"
}

daemon_pid() { # prints the PID if NAME runs, else fails
  local f=$PIDS/$1.pid pid exe
  [ -f "$f" ] || return 1
  read -r pid exe <"$f" || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  local target
  target=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  # " (deleted)": the binary was replaced in the cache while it ran; it is still ours.
  [ "${target% (deleted)}" = "$(readlink -f "$exe")" ] || return 1
  echo "$pid"
}

stop_daemon() { stop_daemons "${2:-20}" "$1"; }

stop_daemons() { # stop_daemons SECONDS NAME...: SIGTERM to all, then SIGKILL what is left after SECONDS
  local wait=$1 name pid i left
  shift
  local -A pids=()
  for name in "$@"; do
    if pid=$(daemon_pid "$name"); then
      pids[$name]=$pid
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for ((i = 0; i < wait * 10; i++)); do
    left=0
    for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for name in "${!pids[@]}"; do
    pid=${pids[$name]}
    if [ -d "/proc/$pid" ]; then
      log "$name (pid $pid) did not stop on SIGTERM within ${wait}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    fi
  done
  for name in "$@"; do rm -f "$PIDS/$name.pid"; done
}

wait_for() { # wait_for SECONDS DESCRIPTION LOGNAME CMD...
  local secs=$1 what=$2 logname=$3 i
  shift 3
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [ -n "$logname" ] && ! daemon_pid "$logname" >/dev/null; then
      tail -n 30 "$LOGS/$logname.log" >&2 || true
      die "$logname exited while waiting for $what (log: $LOGS/$logname.log)"
    fi
    sleep 0.25
  done
  [ -n "$logname" ] && tail -n 30 "$LOGS/$logname.log" >&2
  die "timed out after ${secs}s waiting for $what${logname:+ (log: $LOGS/$logname.log)}"
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# ---------------------------------------------------------------------------------------------
# Certificates and kubeconfigs

node_ip() { # the first address of the default route's interface, else any global one but docker0's
  local dev ip=""
  dev=$(ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
  [ -n "$dev" ] && ip=$(ip -4 -o addr show dev "$dev" scope global | awk '{print $4}' | cut -d/ -f1 | head -n1)
  [ -n "$ip" ] || ip=$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | grep -v '^172\.17\.' | head -n1)
  [ -n "$ip" ] || die "no global IPv4 address on this host for the node (kubelet --node-ip)"
  echo "$ip"
}

# cert NAME CN O SANs: a key and a certificate signed by the cluster CA.
cert() {
  local name=$1 cn=$2 org=$3 sans=${4:-} subj ext
  subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org$subj"
  ext=$PKI/$name.ext
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

kubeconfig() { # kubeconfig FILE CERTNAME USER
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pytrace
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $3
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: pytrace
  context: {cluster: pytrace, user: $3}
current-context: pytrace
EOF
}

gen_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=kubectl-pytrace-local-ca" -days 3650 \
    -sha256 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI/ca.crt" 2>/dev/null
  cert apiserver kube-apiserver "" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$NODE_NAME,IP:127.0.0.1,IP:$SERVICE_IP,IP:$NODE_IP"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert admin kubernetes-admin system:masters
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kubelet-client "system:node:$NODE_NAME" system:nodes
  cert kube-proxy system:kube-proxy ""
  cert kubelet-serving "system:node:$NODE_NAME" system:nodes "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
  openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  kubeconfig "$KUBECONFIG_ADMIN" admin kubernetes-admin
  kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  kubeconfig "$STATE/scheduler.kubeconfig" scheduler system:kube-scheduler
  kubeconfig "$STATE/kubelet.kubeconfig" kubelet-client "system:node:$NODE_NAME"
  kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy system:kube-proxy
}

# ---------------------------------------------------------------------------------------------
# Host preparation: cgroups, kernel file systems, CNI

cgroup_v2() { [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; }

# Every cgroup v1 hierarchy mounted under /sys/fs/cgroup (named ones such as name=systemd included),
# and the unified one of a hybrid host.
cgroup_dirs() {
  if cgroup_v2; then
    echo /sys/fs/cgroup
    return
  fi
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts | grep '^/sys/fs/cgroup/' | sort -u
}

make_cgroup_root() {
  local d
  if cgroup_v2; then
    mkdir -p "/sys/fs/cgroup/$CGROUP_ROOT"
    for c in cpu cpuset memory pids io hugetlb; do
      echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
      echo "+$c" >"/sys/fs/cgroup/$CGROUP_ROOT/cgroup.subtree_control" 2>/dev/null || true
    done
    return
  fi
  while read -r d; do
    mkdir -p "$d/$CGROUP_ROOT"
    # A new cpuset cgroup starts with no CPUs and no memory nodes: copy the parent's.
    if [ -f "$d/cpuset.cpus" ]; then
      [ -s "$d/$CGROUP_ROOT/cpuset.cpus" ] && [ -n "$(cat "$d/$CGROUP_ROOT/cpuset.cpus")" ] ||
        cat "$d/cpuset.cpus" >"$d/$CGROUP_ROOT/cpuset.cpus"
      [ -n "$(cat "$d/$CGROUP_ROOT/cpuset.mems")" ] || cat "$d/cpuset.mems" >"$d/$CGROUP_ROOT/cpuset.mems"
    fi
  done < <(cgroup_dirs)
}

remove_cgroup_root() {
  local d sub
  while read -r d; do
    [ -d "$d/$CGROUP_ROOT" ] || continue
    # Deepest first; a cgroup with processes left in it cannot be removed (reported by status).
    while read -r sub; do rmdir "$sub" 2>/dev/null || true; done < <(find "$d/$CGROUP_ROOT" -depth -type d)
  done < <(cgroup_dirs)
}

# tracefs and debugfs for BPF tracing pods (hostPath /sys/kernel/...). Mounted only if missing, and
# then unmounted by `down`.
mount_kernel_fs() {
  mkdir -p "$STATE"
  if ! mountpoint -q /sys/kernel/debug; then
    mount -t debugfs nodev /sys/kernel/debug && echo /sys/kernel/debug >>"$STATE/host-mounts"
  fi
  if ! mountpoint -q /sys/kernel/tracing; then
    mount -t tracefs nodev /sys/kernel/tracing && echo /sys/kernel/tracing >>"$STATE/host-mounts"
  fi
  if [ ! -e /sys/fs/bpf ] || ! mountpoint -q /sys/fs/bpf; then
    mkdir -p /sys/fs/bpf 2>/dev/null && mount -t bpf bpf /sys/fs/bpf && echo /sys/fs/bpf >>"$STATE/host-mounts" || true
  fi
}

# Docker sets the FORWARD policy to DROP; with br_netfilter, traffic between pods on our bridge
# and to Services (DNAT to a pod on the same bridge) goes through FORWARD too. One chain of ours,
# jumped to from FORWARD, accepts what enters or leaves the bridge; `down` removes both.
FORWARD_CHAIN=PYTRACE-FORWARD

allow_forwarding() {
  if [ "$(cat /proc/sys/net/ipv4/ip_forward)" != 1 ]; then
    echo 1 >/proc/sys/net/ipv4/ip_forward
    echo 0 >"$STATE/ip_forward.orig"
  fi
  iptables -w -N "$FORWARD_CHAIN" 2>/dev/null || iptables -w -F "$FORWARD_CHAIN"
  iptables -w -A "$FORWARD_CHAIN" -i "$BRIDGE" -j ACCEPT
  iptables -w -A "$FORWARD_CHAIN" -o "$BRIDGE" -j ACCEPT
  iptables -w -C FORWARD -j "$FORWARD_CHAIN" 2>/dev/null || iptables -w -I FORWARD 1 -j "$FORWARD_CHAIN"
}

remove_forwarding() {
  command -v iptables >/dev/null || return 0
  while iptables -w -D FORWARD -j "$FORWARD_CHAIN" 2>/dev/null; do :; done
  iptables -w -F "$FORWARD_CHAIN" 2>/dev/null || true
  iptables -w -X "$FORWARD_CHAIN" 2>/dev/null || true
  if [ -f "$STATE/ip_forward.orig" ]; then cat "$STATE/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward; fi
}

write_cni_config() {
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$STATE/cni/net.d/10-pytrace.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "pytrace",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

write_containerd_config() {
  mkdir -p "$STATE/containerd" "$RUN/containerd"
  local RESTRICT_OOM=false
  if ! (echo -998 >/proc/self/oom_score_adj) 2>/dev/null; then
    RESTRICT_OOM=true
  fi
  cat >"$STATE/containerd.toml" <<EOF
# The local cluster's own containerd (hack/cluster.sh); dockerd's containerd is another instance.
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
plugin_dir = ""
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = "$RUN/containerd/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false
  # Pods ask for negative OOM score adjustments (-998 for the sandbox), which needs CAP_SYS_RESOURCE;
  # where root lacks it (this VM), runc init fails ("can't get final child's PID from pipe").
  # Clamp them to containerd's own value instead.
  restrict_oom_score_adj = $RESTRICT_OOM
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
EOF
}

write_kubelet_config() {
  mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
  cat >"$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: $CRI_ENDPOINT
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
resolvConf: /etc/resolv.conf
podLogsDir: $STATE/pod-logs
podCIDR: $POD_CIDR
maxPods: 50
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
shutdownGracePeriod: 0s
EOF
}

# ---------------------------------------------------------------------------------------------
# Images

load_pause_image() {
  local tar=$TOOLS/pause-image.tar
  if [ ! -f "$tar" ]; then
    /usr/bin/python3 "$REPO/hack/k8s/image_tar.py" --tag "$PAUSE_IMAGE" --file "$TOOLS/pause:/pause" \
      --entrypoint /pause --out "$tar.tmp"
    mv "$tar.tmp" "$tar"
  fi
  ctr --address "$CTRD_SOCK" -n k8s.io images import "$tar" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# up / down / status

start_etcd() {
  mkdir -p "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  start_daemon etcd "$(command -v etcd)" --name pytrace --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "pytrace=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
    --quota-backend-bytes 2147483648 --snapshot-count 10000 --log-level warn
  wait_for 30 "etcd" etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
  start_daemon kube-apiserver "$BIN/kube-apiserver" \
    --advertise-address "$NODE_IP" --bind-address 0.0.0.0 --secure-port "$API_PORT" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --v=1
  wait_for 90 "kube-apiserver /readyz" kube-apiserver kubectl_admin get --raw /readyz
}

start_controllers() {
  start_daemon kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false --v=1
  start_daemon kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1
}

start_containerd() {
  write_cni_config
  write_containerd_config
  start_daemon containerd "$(command -v containerd)" --config "$STATE/containerd.toml"
  wait_for 30 "containerd's CRI service" containerd "$TOOLS/pytrace-cri" -endpoint "$CRI_ENDPOINT" -timeout 2s version
}

start_kubelet() {
  write_kubelet_config
  start_daemon kubelet "$BIN/kubelet" --config "$STATE/kubelet-config.yaml" \
    --kubeconfig "$STATE/kubelet.kubeconfig" --root-dir "$STATE/kubelet" --cert-dir "$PKI/kubelet" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
}

# kube-proxy in nftables mode: Services get ClusterIPs that route, through nft tables of its own
# ("kube-proxy" in the ip and ip6 families), so Docker's iptables rules are never touched; `down`
# deletes those tables.
start_kube_proxy() {
  cat >"$STATE/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
mode: nftables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [primary]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start_daemon kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy-config.yaml" --v=1
}

kube_proxy_ready() { curl -fsS http://127.0.0.1:10256/healthz; }

delete_kube_proxy_tables() {
  command -v nft >/dev/null || return 0
  nft delete table ip kube-proxy 2>/dev/null || true
  nft delete table ip6 kube-proxy 2>/dev/null || true
}

node_ready() {
  [ "$(kubectl_admin get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

all_running() {
  local n
  for n in "${DAEMONS[@]}"; do
    daemon_pid "$n" >/dev/null || return 1
  done
}

leftovers() { # anything of a previous run on this host
  [ -d "$STATE" ] || [ -d "$RUN" ] || ip link show "$BRIDGE" >/dev/null 2>&1 ||
    { command -v nft >/dev/null && nft list table ip kube-proxy >/dev/null 2>&1; } ||
    iptables -w -n -L "$FORWARD_CHAIN" >/dev/null 2>&1
}

cmd_up() {
  need_root
  install_packages
  build_k8s
  build_tools
  if all_running && node_ready; then
    log "already up (node $NODE_NAME Ready)"
    load_images || die "loading the images failed"
    print_env
    return 0
  fi
  if leftovers; then
    log "state of a previous run found: cleaning it up first"
    cmd_down
  fi
  t0=$EPOCHREALTIME
  NODE_IP=$(node_ip)
  mkdir -p "$STATE" "$RUN" "$PIDS" "$LOGS"
  echo "$NODE_IP" >"$STATE/node-ip"
  gen_pki
  mount_kernel_fs
  make_cgroup_root
  allow_forwarding
  start_containerd
  load_pause_image
  # The images (a docker build and a ~400 MB import for the tracer) load while the control plane
  # starts.
  load_images >"$LOGS/images.log" 2>&1 &
  local images_pid=$!
  start_etcd
  start_apiserver
  log "kube-apiserver ready at https://$NODE_IP:$API_PORT ($(elapsed)s)"
  start_controllers
  start_kubelet
  start_kube_proxy
  wait_for 120 "node $NODE_NAME Ready" kubelet node_ready
  log "node $NODE_NAME Ready ($(elapsed)s after start)"
  wait_for 60 "the default service account" kube-controller-manager kubectl_admin -n default get serviceaccount default
  wait_for 60 "kube-proxy" kube-proxy kube_proxy_ready
  if ! wait "$images_pid"; then
    cat "$LOGS/images.log" >&2
    die "loading the images failed (log: $LOGS/images.log)"
  fi
  cat "$LOGS/images.log" >&2
  log "cluster up in $(elapsed)s"
  print_env
}

load_images() {
  case "${PYTRACE_CLUSTER_IMAGES:-all}" in
  0 | none) return 0 ;;
  workload) CTRD_SOCK=$CTRD_SOCK "$REPO/hack/images.sh" load workload ;;
  *) CTRD_SOCK=$CTRD_SOCK "$REPO/hack/images.sh" load all ;;
  esac
}

# Unmount everything mounted under DIR, deepest first.
unmount_under() {
  local dir=$1 m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | uniq)
}

cmd_down() {
  need_root
  local tools have_tools=0
  tools=$(tools_dir)
  [ -x "$tools/pytrace-cri" ] && have_tools=1
  # 1. No kubelet, so nothing restarts pods while we remove them.
  stop_daemons 30 kubelet kube-proxy
  log "kubelet stopped ($(elapsed)s)"
  # 2. Remove every pod through the CRI, which tears down its network (CNI DEL), mounts and shim.
  #    After a crash containerd may be gone: start it again on the same state to do this properly.
  if [ -f "$STATE/containerd.toml" ] && [ "$have_tools" = 1 ]; then
    if ! daemon_pid containerd >/dev/null; then
      log "starting containerd again to remove the pods of the previous run"
      start_daemon containerd "$(command -v containerd)" --config "$STATE/containerd.toml"
      local i
      for ((i = 0; i < 60; i++)); do
        "$tools/pytrace-cri" -endpoint "$CRI_ENDPOINT" -timeout 2s version >/dev/null 2>&1 && break
        sleep 0.5
      done
    fi
    "$tools/pytrace-cri" -endpoint "$CRI_ENDPOINT" -timeout 3m reset >/dev/null && log "pods removed ($(elapsed)s)" ||
      log "some pods could not be removed through the CRI; removing what is left by hand"
  fi
  # 3. The control plane and containerd.
  stop_daemons 30 kube-scheduler kube-controller-manager kube-apiserver containerd
  stop_daemon etcd
  log "control plane and containerd stopped ($(elapsed)s)"
  # 4. Shims (and their containers) that outlived containerd: by their own PID files.
  local f pid
  if [ -d "$RUN/containerd" ]; then
    while read -r f; do
      pid=$(cat "$f" 2>/dev/null || true)
      [ -n "$pid" ] && [ -d "/proc/$pid" ] || continue
      # Guard against a reused PID: a shim of this containerd, or a process in our pods' cgroups.
      case "$(basename "$f")" in
      shim.pid) tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CTRD_SOCK" || continue ;;
      init.pid) grep -q ":/$CGROUP_ROOT/" "/proc/$pid/cgroup" || continue ;;
      esac
      kill -KILL "$pid" 2>/dev/null || true
    done < <(find "$RUN/containerd" -name init.pid -o -name shim.pid 2>/dev/null)
  fi
  # 5. Mounts (pod volumes, shm, overlay rootfs), cgroups, network, host file systems we mounted.
  unmount_under "$STATE"
  unmount_under "$RUN"
  remove_cgroup_root
  delete_kube_proxy_tables
  remove_forwarding
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE" 2>/dev/null || true
  if [ -f "$STATE/host-mounts" ]; then
    while read -r f; do umount "$f" 2>/dev/null || true; done < <(sort -r "$STATE/host-mounts")
  fi
  rm -rf "$STATE" "$RUN"
  log "down in $(elapsed)s"
}

cmd_status() {
  local n pid rc=0
  for n in "${DAEMONS[@]}"; do
    if pid=$(daemon_pid "$n"); then
      printf '%-24s running (pid %s)\n' "$n" "$pid"
    else
      printf '%-24s not running\n' "$n"
      rc=1
    fi
  done
  if [ -f "$KUBECONFIG_ADMIN" ] && [ -x "$BIN/kubectl" ]; then
    kubectl_admin get nodes -o wide 2>&1 || rc=1
  fi
  print_env
  return $rc
}

print_env() { # shell syntax: eval "$(hack/cluster.sh env)"
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
  echo "export KUBECTL=$BIN/kubectl"
  echo "export K8S_VERSION=$K8S_VERSION"
  echo "export CONTAINERD_ADDRESS=$CTRD_SOCK"
}

cmd_restart_apiserver() { # a control plane upgrade, as clients see it: every connection is cut
  need_root
  daemon_pid kube-apiserver >/dev/null || die "kube-apiserver is not running (hack/cluster.sh up)"
  NODE_IP=$(node_ip)
  log "restarting kube-apiserver"
  stop_daemon kube-apiserver 3
  start_apiserver
  log "kube-apiserver is back after $(elapsed)s"
  # then the controllers, in turn, as an upgrade does (left alone, this controller-manager's
  # informers take a minute or more to come back after the API server was killed)
  stop_daemons 10 kube-controller-manager kube-scheduler
  start_controllers
  log "controllers restarted after $(elapsed)s"
}

cmd_restart_kubelet() { # the node agent restarts (an upgrade): log streams through it are cut
  need_root
  daemon_pid kubelet >/dev/null || die "kubelet is not running (hack/cluster.sh up)"
  NODE_IP=$(node_ip)
  log "restarting kubelet"
  stop_daemon kubelet 20
  start_kubelet
  wait_for 120 "node $NODE_NAME Ready" kubelet node_ready
  log "kubelet is back after $(elapsed)s"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
restart-apiserver) cmd_restart_apiserver ;;
restart-kubelet) cmd_restart_kubelet ;;
status) cmd_status ;;
env) print_env ;;
build)
  need_root
  build_k8s
  build_tools
  ;;
*)
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
