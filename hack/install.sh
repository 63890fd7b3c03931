#!/usr/bin/env bash
# Installs what kubectl-pytrace needs on a Debian 12 host (run as root) and creates ./.venv.
#   hack/install.sh          the tracer: BCC, kernel headers, the package
#   hack/install.sh --test   also what the test suite needs (bpftrace, a C compiler, sys/sdt.h, pytest,
#                            and the programs' workloads: PostgreSQL 15 and CPython 3.11 with their USDT
#                            probes, iproute2 and iptables for network namespaces and packet loss)
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

pkgs=(python3-bpfcc python3-capstone bpfcc-tools bpftool linux-headers-amd64 libc6-dev linux-libc-dev python3-venv python3-pip)
[ "$want_test" = 1 ] && pkgs+=(bpftrace gcc make systemtap-sdt-dev postgresql-15 python3.11 iproute2 iptables python3-seccomp)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# BCC's Python module is Debian's (python3-bpfcc), so the venv is made from Debian's python3
# and sees its site-packages.
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
extra=""
[ "$want_test" = 1 ] && extra="[test]"
# "compat" editable mode: a plain path entry, not an import hook that costs ~10 ms at every start
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extra}" --config-settings editable_mode=compat
# Byte-compile now: the tracer's start-up is measured against bpftrace's, and an environment with
# PYTHONDONTWRITEBYTECODE would otherwise recompile every module on every run.
.venv/bin/python -m compileall -q kubectl_pytrace >/dev/null
