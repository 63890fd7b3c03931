#!/bin/bash
# Imports every image tar in DIR into the node image's containerd (k8s.io namespace, the CRI's), at
# build time: a containerd of its own on a private socket, without the CRI; content and metadata
# only (--no-unpack: the build has no overlay mounts), pinned against the kubelet's image GC.
set -euo pipefail
dir=$1
run=/run/preload-containerd
mkdir -p "$run"
cat >"$run/config.toml" <<CONF
version = 2
root = "/var/lib/containerd"
state = "$run/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$run/containerd.sock"
CONF
containerd --config "$run/config.toml" >"$run/log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$run/containerd.sock" ] && break; sleep 0.1; done
ctr_() { ctr --address "$run/containerd.sock" --namespace k8s.io "$@"; }
for tar in "$dir"/*.tar; do
  ctr_ images import --no-unpack --all-platforms "$tar" >/dev/null
done
for ref in $(ctr_ images ls -q); do
  ctr_ images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
  echo "preloaded $ref"
done
kill "$pid"
wait "$pid" || true
rm -rf "$run"
