#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: installs what it needs, then pytest.
#   hack/test.sh                 everything (compiler, runtime against the kernel, bpftrace
#                                comparisons, Docker containers, the local Kubernetes cluster), then
#                                the plugin's end-to-end tests once more on a kind cluster of three
#                                nodes (hack/kind.sh test: up, tests, down)
#   hack/test.sh tests/lang      a part (any pytest arguments; no kind stage)
# The Docker engine and the cluster are started by the tests' fixtures (hack/docker.sh,
# hack/cluster.sh) and stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "hack/test.sh: run as root (the tests load BPF programs and run containers)" >&2
  exit 1
fi
hack/install.sh --test
[ $# -gt 0 ] && exec .venv/bin/pytest -ra "$@"
rc=0
.venv/bin/pytest -ra || rc=$?
hack/kind.sh test || rc=$?
exit "$rc"
