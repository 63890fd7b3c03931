#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: installs what it needs, then pytest.
#   hack/test.sh                 everything (compiler, runtime against the kernel, bpftrace
#                                comparisons, Docker containers, the local Kubernetes cluster)
#   hack/test.sh tests/lang      a part (any pytest arguments)
# The Docker engine and the cluster are started by the tests' fixtures (hack/docker.sh,
# hack/cluster.sh) and stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "hack/test.sh: run as root (the tests load BPF programs and run containers)" >&2
  exit 1
fi
hack/install.sh --test
exec .venv/bin/pytest -ra "$@"
