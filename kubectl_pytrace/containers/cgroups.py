"""Parse ``/proc/<pid>/cgroup`` and find the container a process belongs to.

Each line of ``/proc/<pid>/cgroup`` is ``hierarchy-id:controllers:path``. On cgroup v1 there is one
line per mounted hierarchy (``4:memory:/docker/<id>``, ``9:name=systemd:/docker/<id>``); on cgroup v2
a single line ``0::<path>``; on a "hybrid" host both (the v1 lines and a ``0::`` line for the
unified hierarchy mounted at /sys/fs/cgroup/unified). Paths are relative to the root of the reading
process's cgroup namespace; a path outside it starts with ``/..``.

A container runtime names the cgroup of a container after the container ID. The layouts recognised
(``<id>`` is the 64-hex-digit container ID, ``<uid>`` the pod UID)::

    Docker, cgroupfs driver (v1 lines, and the v2/hybrid line when runc joins the unified hierarchy):
        4:memory:/docker/<id>
        0::/docker/<id>
    Docker, systemd driver:
        1:name=systemd:/system.slice/docker-<id>.scope
        0::/system.slice/docker-<id>.scope
    containerd without Kubernetes (ctr, nerdctl; cgroupfs driver; the path is /<namespace>/<id>):
        0::/default/<id>
        4:memory:/default/<id>
    Kubernetes with containerd or Docker, cgroupfs driver (QoS class directories, none for Guaranteed):
        4:memory:/kubepods/burstable/pod<uid>/<id>
        0::/kubepods/besteffort/pod<uid>/<id>
        0::/kubepods/pod<uid>/<id>
    Kubernetes with containerd, systemd driver (dashes of the pod UID become underscores):
        0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
        1:name=systemd:/kubepods.slice/kubepods-pod<uid_>.slice/cri-containerd-<id>.scope
    Kubernetes with Docker (dockershim / cri-dockerd), systemd driver:
        0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/docker-<id>.scope
    Kubernetes with CRI-O, systemd driver (the container's monitor sits beside it in crio-conmon-<id>.scope,
    which is not the container and is not matched):
        0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/crio-<id>.scope
    Kubernetes with CRI-O, cgroupfs driver:
        4:memory:/kubepods/burstable/pod<uid>/crio-<id>
    Podman, systemd and cgroupfs drivers:
        0::/machine.slice/libpod-<id>.scope
        0::/libpod_parent/libpod-<id>
    A reader in a private cgroup namespace sees other namespaces' paths through "..":
        0::/../../kubepods/burstable/pod<uid>/<id>

Nested containers (Docker in Docker) put one ID after another: ``0::/docker/<outer>/docker/<inner>``;
both IDs are returned, outermost first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

ID_LEN = 64
_HEX64 = r"[0-9a-f]{64}"

# (regex for one path component, runtime, cgroup driver). First match wins; order matters only in
# that the conmon exclusion precedes the cri-o rule.
_COMPONENT_RULES: Tuple[Tuple["re.Pattern[str]", Optional[str], str], ...] = (
    (re.compile(rf"^crio-conmon-{_HEX64}(\.scope)?$"), None, ""),      # CRI-O's monitor: not the container
    (re.compile(rf"^docker-({_HEX64})\.scope$"), "docker", "systemd"),
    (re.compile(rf"^cri-containerd-({_HEX64})\.scope$"), "containerd", "systemd"),
    (re.compile(rf"^crio-({_HEX64})\.scope$"), "cri-o", "systemd"),
    (re.compile(rf"^crio-({_HEX64})$"), "cri-o", "cgroupfs"),
    (re.compile(rf"^libpod-({_HEX64})\.scope$"), "podman", "systemd"),
    (re.compile(rf"^libpod-({_HEX64})$"), "podman", "cgroupfs"),
    (re.compile(rf"^({_HEX64})$"), "", "cgroupfs"),                     # runtime from the parent
)


@dataclass(frozen=True)
class CgroupLine:
    """One line of /proc/<pid>/cgroup. hierarchy 0 with no controllers is the cgroup v2 line."""
    hierarchy: int
    controllers: Tuple[str, ...]
    path: str

    @property
    def is_v2(self) -> bool:
        return self.hierarchy == 0 and not self.controllers


@dataclass(frozen=True)
class ContainerRef:
    """A container ID found in a cgroup path, with what the path says about who made it."""
    id: str
    runtime: str        # "docker" | "containerd" | "cri-o" | "podman" | "kubernetes" | "unknown"
    driver: str         # cgroup driver: "cgroupfs" | "systemd"


def parse_cgroup_file(text: str) -> List[CgroupLine]:
    """The lines of a /proc/<pid>/cgroup file; malformed lines are skipped."""
    out: List[CgroupLine] = []
    for raw in text.splitlines():
        parts = raw.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        controllers = tuple(c for c in parts[1].split(",") if c)
        out.append(CgroupLine(int(parts[0]), controllers, parts[2]))
    return out


def v2_path(lines: List[CgroupLine]) -> Optional[str]:
    """The path in the cgroup v2 (unified) hierarchy, if the process has one."""
    for line in lines:
        if line.is_v2:
            return line.path
    return None


def containers_in_path(path: str) -> List[ContainerRef]:
    """The container IDs named in one cgroup path, outermost first."""
    refs: List[ContainerRef] = []
    parent = ""
    for comp in path.split("/"):
        for rx, runtime, driver in _COMPONENT_RULES:
            m = rx.match(comp)
            if not m:
                continue
            if runtime is None:
                break
            if runtime == "":
                runtime = _runtime_from_parent(parent, path)
            refs.append(ContainerRef(m.group(1), runtime, driver))
            break
        parent = comp
    return refs


def _runtime_from_parent(parent: str, path: str) -> str:
    # A bare ID: /docker/<id> is Docker; /kubepods/.../pod<uid>/<id> is Kubernetes (containerd or
    # Docker: the path does not say); /<namespace>/<id> is containerd outside Kubernetes.
    if parent == "docker":
        return "docker"
    if parent.startswith("pod") or "/kubepods" in path:
        return "kubernetes"
    if parent and not parent.endswith(".slice") and not parent.startswith(".."):
        return "containerd"
    return "unknown"


def containers_of(lines: List[CgroupLine]) -> List[ContainerRef]:
    """The container IDs a process's cgroup lines name, outermost first, each ID once.

    All hierarchies are looked at (v1 controllers, name=systemd and v2), since a host may have a
    container in only some of them.
    """
    seen = {}
    for line in lines:
        for ref in containers_in_path(line.path):
            seen.setdefault(ref.id, ref)
    # Outermost first: the order along the longest path that names them.
    best: List[ContainerRef] = []
    for line in lines:
        refs = containers_in_path(line.path)
        if len(refs) > len(best):
            best = refs
    order = [r.id for r in best] + [i for i in seen if i not in {r.id for r in best}]
    return [seen[i] for i in order]


def cgroup_level(path: str) -> int:
    """Depth of a cgroup v2 path below the hierarchy root: "/" is 0, "/docker/<id>" is 2.

    This is the level bpf_get_current_ancestor_cgroup_id() takes, valid only for a path relative to
    the root of the initial cgroup namespace.
    """
    return len([c for c in path.split("/") if c])
