#!/bin/sh
# Entrypoint of the tracer image: the same engine as `kubectl pytrace run --local`, run inside a
# privileged hostPID pod. Arguments are kubectl_pytrace's own (the tracer subcommand and its
# options, passed by the Job that `kubectl pytrace` creates).
set -e
exec python3 -m kubectl_pytrace "$@"
