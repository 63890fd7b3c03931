"""kubectl-pytrace: trace Kubernetes pods and hosts with eBPF, using a bpftrace-compatible language."""

__version__ = "0.1.0"
