#!/bin/sh
# Entrypoint of the tracer image: the same engine as `kubectl pytrace run --local`, run inside a
# privileged hostPID pod. Arguments are kubectl-pytrace's own command line, as the Job that
# `kubectl pytrace run` creates passes them.
set -e
exec python3 -m kubectl_pytrace "$@"
