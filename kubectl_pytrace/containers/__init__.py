"""Containers as the host sees them: which processes, cgroup and namespaces a container ID names
(resolve.py, from cgroup paths: cgroups.py), how to scope probes to them in the kernel, and their
files by the paths a user knows from inside (fs.py). Pure Python over procfs: no BPF here."""
