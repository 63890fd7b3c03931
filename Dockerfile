# The tracer image: what runs on a node, privileged with hostPID, to trace pods there.
#   docker build -t localhost/kubectl-pytrace/tracer:dev .                (public Debian base)
#   docker build --build-arg BASE_IMAGE=<local bookworm image> -t ... .   (no registry: CI uses
#                                                                          hack/base-image.sh)
# It holds Debian's BCC (python3-bpfcc), Capstone (python3-capstone: a Go function's RET
# instructions) and bpftool, and the kubectl_pytrace package in a venv that sees Debian's
# site-packages; no compiler and no kernel headers: those come from the host
# (hostPath mounts of /lib/modules and /usr/src), like /sys, /proc, tracefs and debugfs.
# It must stay a Debian bookworm base: BCC, the venv's python and the host layout assume it.
ARG BASE_IMAGE=debian:bookworm

FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv python3-setuptools python3-wheel \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
# The package only; its dependencies are Debian's (python3-click, -lark, -jinja2, -yaml) in the
# final stage, seen through --system-site-packages.
RUN cd /src && { [ -f README.md ] || : > README.md; } \
 && python3 -m venv --system-site-packages /opt/kubectl-pytrace \
 && /opt/kubectl-pytrace/bin/pip install --no-cache-dir --no-deps --no-build-isolation --no-compile . \
 && /opt/kubectl-pytrace/bin/pip uninstall -y -q pip \
 && rm -rf /opt/kubectl-pytrace/lib/python3*/site-packages/setuptools* \
           /opt/kubectl-pytrace/lib/python3*/site-packages/_distutils_hack \
           /opt/kubectl-pytrace/lib/python3*/site-packages/distutils-precedence.pth

FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-bpfcc python3-capstone bpftool libc6-dev linux-libc-dev \
      python3-click python3-lark python3-jinja2 python3-yaml \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /usr/share/doc/* /usr/share/man/* /usr/share/locale/*
COPY --from=build /opt/kubectl-pytrace /opt/kubectl-pytrace
COPY tracer_image/entrypoint.sh /usr/local/bin/kubectl-pytrace-entrypoint
ENV PATH=/opt/kubectl-pytrace/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN python3 -c 'import bcc, capstone, kubectl_pytrace' && bpftool version >/dev/null
ENTRYPOINT ["/usr/local/bin/kubectl-pytrace-entrypoint"]
