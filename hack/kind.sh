#!/usr/bin/env bash
# A kind cluster for the e2e tests, for machines with Docker and internet access (a user's laptop,
# their CI). The tests then run against it through KUBECONFIG, like against any cluster:
#
#   hack/kind.sh up        create the cluster (if missing), build and load the tracer and workload images
#   hack/kind.sh load      rebuild and load the images only (after changing the package)
#   hack/kind.sh down      delete the cluster
#   eval "$(hack/kind.sh env)" && .venv/bin/pytest -m cluster
#
# Needs docker, kind (https://kind.sigs.k8s.io) and kubectl on PATH. Not run on the project's own
# machines (no registry there for kind's node image): they use hack/cluster.sh.
#
# The node gets the host's /lib/modules and /usr/src (kernel headers for BCC) and, when mounted on
# the host, debugfs and tracefs, so privileged hostPID tracer pods find them at the usual places.
#
# Environment: PYTRACE_KIND_CLUSTER (name, default pytrace), PYTRACE_KIND_NODE_IMAGE (kind's
# --image), BASE_IMAGE (the Dockerfile's base, default its debian:bookworm), PYTRACE_TRACER_IMAGE,
# PYTRACE_WORKLOAD_IMAGE.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=${PYTRACE_KIND_CLUSTER:-pytrace}
TRACER_IMAGE=${PYTRACE_TRACER_IMAGE:-localhost/kubectl-pytrace/tracer:dev}
WORKLOAD_IMAGE=${PYTRACE_WORKLOAD_IMAGE:-localhost/kubectl-pytrace/workload:dev}
KUBECONFIG_FILE=${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-pytrace/kind-$NAME.kubeconfig

die() {
  printf 'kind.sh: error: %s\n' "$*" >&2
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not on PATH ($2)"; }

exists() { kind get clusters 2>/dev/null | grep -qxF "$NAME"; }

kind_config() {
  local p
  echo "kind: Cluster"
  echo "apiVersion: kind.x-k8s.io/v1alpha4"
  echo "nodes:"
  echo "- role: control-plane"
  echo "  extraMounts:"
  for p in /lib/modules /usr/src /sys/kernel/debug /sys/kernel/tracing; do
    [ -d "$p" ] || continue
    echo "  - {hostPath: $p, containerPath: $p, readOnly: false}"
  done
}

cmd_up() {
  need docker "https://docs.docker.com/engine/install/"
  need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  need kubectl "https://kubernetes.io/docs/tasks/tools/"
  mkdir -p "$(dirname "$KUBECONFIG_FILE")"
  if ! exists; then
    local cfg args=()
    cfg=$(mktemp)
    kind_config >"$cfg"
    [ -n "${PYTRACE_KIND_NODE_IMAGE:-}" ] && args+=(--image "$PYTRACE_KIND_NODE_IMAGE")
    kind create cluster --name "$NAME" --config "$cfg" --kubeconfig "$KUBECONFIG_FILE" --wait 120s "${args[@]}" ||
      { rm -f "$cfg"; die "kind create cluster failed"; }
    rm -f "$cfg"
  else
    kind get kubeconfig --name "$NAME" >"$KUBECONFIG_FILE"
  fi
  cmd_load
  cmd_env
}

cmd_load() {
  need docker "https://docs.docker.com/engine/install/"
  need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  exists || die "no kind cluster named $NAME (hack/kind.sh up)"
  local args=()
  [ -n "${BASE_IMAGE:-}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  docker build "${args[@]}" -t "$TRACER_IMAGE" "$REPO" || die "docker build of the tracer image failed"
  kind load docker-image --name "$NAME" "$TRACER_IMAGE" || die "kind load docker-image failed"
  # The workload image is written without Docker (hack/images.sh, needs gcc and Debian's apt for
  # busybox-static); kind loads it as an archive.
  local tar
  tar=$(PYTRACE_CACHE_DIR=${PYTRACE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-pytrace} \
    "$REPO/hack/images.sh" workload-tar) || die "building the workload image failed"
  kind load image-archive --name "$NAME" "$tar" || die "kind load image-archive failed"
}

cmd_env() {
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  echo "export PYTRACE_TRACER_IMAGE=$TRACER_IMAGE"
  echo "export PYTRACE_WORKLOAD_IMAGE=$WORKLOAD_IMAGE"
}

case "${1:-}" in
up) cmd_up ;;
load) cmd_load ;;
down)
  need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  if exists; then kind delete cluster --name "$NAME"; fi
  rm -f "$KUBECONFIG_FILE"
  ;;
env) cmd_env ;;
*)
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
