"""Resolve a container (by ID, or by one of its PIDs) to what is on the host, and choose how to scope
probes to it in the kernel.

    c = resolve_container("docker://3f2a...")      # or resolve_pid(4242)
    f = choose_filter(c)                            # TaskFilter(kind="cgroup" | "pidns" | "mntns" | "tgid")
    host = containerfs.resolve_path(c, "/app/server")

Pure Python over procfs (no BCC). Every function takes ``proc_root`` (default ``$HOST_PROC`` or
/proc); the container runtimes' state directories are looked up under ``host_root`` (default
``$HOST_ROOT`` or /) only to tell "no running process" from "no such container".

Container IDs: an optional ``docker://``, ``containerd://``, ``cri-o://`` (or ``crio://``,
``podman://``) prefix, then the full 64-hex-digit ID or a prefix of it of at least 12 digits (what
``docker ps`` shows) that matches exactly one container. Upper case is accepted.

``--pid N``: the container that process N is in (all of its processes, not only N's tree, since a
container is the unit the filter can see). A process that is in no container is scoped to itself:
a "tgid" filter, like ``bpftrace -p`` (the host is not a container; tracing the whole host is what
leaving out --pid does).

The in-kernel filter, chosen per host and container by choose_filter() (first that works):
1. "cgroup": the container has its own cgroup v2 group (cgroup v2 hosts; hybrid hosts when runc
   also places it in the unified hierarchy, as runc 1.1 does). Exact: one container, even when
   containers share a pid namespace (a Kubernetes pod with shareProcessNamespace, --pid=host).
2. "pidns": the container has a pid namespace of its own. bpf_get_ns_current_pid_tgid() needs no
   kernel struct reads, so it is right with another kernel's headers.
3. "mntns": the container's mount namespace inode; the engine must read it from the task through
   BTF-resolved offsets (task_struct->nsproxy->mnt_ns->ns.inum).
None of them is a list of PIDs, so processes the container starts after attach are covered.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from kubectl_pytrace.containers import cgroups
from kubectl_pytrace.errors import ContainerError, LookupFailed
from kubectl_pytrace.kernel import procfs
from kubectl_pytrace.kernel.procfs import NsId

ENV_ROOT = "HOST_ROOT"
MIN_ID_PREFIX = 12
FILTER_KINDS = ("cgroup", "pidns", "mntns")

_PREFIXES = {"docker": "docker", "containerd": "containerd", "cri-o": "cri-o", "crio": "cri-o",
             "podman": "podman"}
_ID_RE = re.compile(r"^(?:(?P<scheme>[a-z-]+)://)?(?P<id>[0-9a-fA-F]+)$")


# ------------------------------------------------------------------------------------------------
# Errors: each message reads well as "error: <message>".

class InvalidContainerId(ContainerError):
    pass


class ContainerNotFound(ContainerError):
    pass


class AmbiguousContainerId(ContainerError):
    pass


class NoRunningProcess(ContainerError):
    pass


class NoSuchPid(ContainerError):
    pass


class PathNotInContainer(ContainerError, LookupFailed):
    """A path (or library name) that does not exist inside the container (or on the host): the
    compiler reports it at the attach point that names it."""


class NoUsableFilter(ContainerError):
    pass


# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Container:
    """A running container as the host sees it.

    id is the full 64-hex-digit ID, None for a host process given by --pid. pids are the host PIDs
    of its processes when it was resolved (a snapshot: the filter does not use it). pid is the one
    used to look inside: its init process when there is one. cgroup_paths are (controllers, path)
    per hierarchy of that process ("" is the v2 hierarchy). cgroup_v2_id is set when the container
    has a cgroup v2 group of its own; cgroup_v2_level is that group's depth for
    bpf_get_current_ancestor_cgroup_id(), when the tracer sees absolute cgroup paths. pidns/mntns are
    stat() of /proc/<pid>/ns/{pid,mnt}; root is /proc/<pid>/root, where its files are.
    """
    id: Optional[str]
    runtime: str
    cgroup_driver: str
    pids: Tuple[int, ...]
    pid: int
    cgroup_paths: Tuple[Tuple[str, str], ...]
    cgroup_v2_path: Optional[str]
    cgroup_v2_id: Optional[int]
    cgroup_v2_level: Optional[int]
    cgroup_v2_note: str
    pidns: Optional[NsId]
    mntns: Optional[NsId]
    root: str
    proc_root: str = field(default="/proc", compare=False)

    @property
    def short_id(self) -> str:
        return self.id[:12] if self.id else ""

    def describe(self) -> str:
        if self.id is None:
            return f"process {self.pid} (host)"
        return f"container {self.short_id} ({self.runtime})"

    def ns_pid(self, host_pid: int) -> Optional[int]:
        """host_pid's PID inside its innermost pid namespace, None if it is gone."""
        pids = procfs.ns_pids(self.proc_root, host_pid)
        return pids[-1] if pids else None


@dataclass(frozen=True)
class TaskFilter:
    """How every probe is scoped to the target in the kernel: the values the predicate compares
    with (lang/scope.py emits the predicate for each kind; the engine writes these values).

    kind "cgroup": current task's cgroup v2 id == cgroup_id (with cgroup_level >= 0, its ancestor at
        that level: also covers sub-groups the container makes).
    kind "pidns": bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, ...) == 0, pidns_dev in the
        kernel's dev_t encoding.
    kind "mntns": task->nsproxy->mnt_ns->ns.inum == mntns_ino (offsets from BTF).
    kind "tgid": bpf_get_current_pid_tgid() >> 32 == tgid (a host process given by --pid).
    pidns_dev/pidns_ino are also set, whatever the kind, when the target has its own pid namespace,
    for printing container-namespace PIDs. reason says why this kind was chosen on this host.
    """
    kind: str
    reason: str
    cgroup_id: int = 0
    cgroup_level: int = -1
    pidns_dev: int = 0
    pidns_ino: int = 0
    mntns_ino: int = 0
    tgid: int = 0


# ------------------------------------------------------------------------------------------------
# Container IDs

def parse_container_id(text: str) -> Tuple[str, Optional[str]]:
    """(lower-case hex ID or prefix, runtime named by the scheme or None)."""
    m = _ID_RE.match(text.strip())
    if not m:
        raise InvalidContainerId(
            f"invalid container ID {text!r}: expected hex digits, optionally after docker://, "
            f"containerd:// or cri-o://")
    scheme = m.group("scheme")
    runtime = None
    if scheme is not None:
        runtime = _PREFIXES.get(scheme)
        if runtime is None:
            raise InvalidContainerId(
                f"invalid container ID {text!r}: unknown runtime {scheme + '://'!r} "
                f"(known: docker://, containerd://, cri-o://)")
    cid = m.group("id").lower()
    if len(cid) > cgroups.ID_LEN:
        raise InvalidContainerId(f"invalid container ID {text!r}: longer than {cgroups.ID_LEN} hex digits")
    if len(cid) < MIN_ID_PREFIX:
        raise InvalidContainerId(
            f"container ID {text!r} is too short: give at least {MIN_ID_PREFIX} hex digits")
    return cid, runtime


# ------------------------------------------------------------------------------------------------
# Scanning /proc

@dataclass
class _Proc:
    pid: int
    lines: List[cgroups.CgroupLine]
    refs: List[cgroups.ContainerRef]


def _scan(proc_root: str) -> List[_Proc]:
    out = []
    for pid, text in procfs.iter_pid_cgroups(proc_root):
        lines = cgroups.parse_cgroup_file(text)
        out.append(_Proc(pid, lines, cgroups.containers_of(lines)))
    return out


def _state_dirs(host_root: str) -> List[Tuple[str, str]]:
    """(directory whose entries are container IDs, runtime) where runtimes keep their containers."""
    out = [(os.path.join(host_root, "var/lib/docker/containers"), "docker"),
           (os.path.join(host_root, "var/lib/containers/storage/overlay-containers"), "cri-o")]
    task = os.path.join(host_root, "run/containerd/io.containerd.runtime.v2.task")
    try:
        for ns in sorted(os.listdir(task)):
            out.append((os.path.join(task, ns), "containerd"))
    except OSError:
        pass
    return out


def _known_but_stopped(prefix: str, host_root: str) -> Optional[Tuple[str, str]]:
    """(full ID, runtime) of a container the runtimes know but that has no process here."""
    for d, runtime in _state_dirs(host_root):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            if len(n) == cgroups.ID_LEN and n.startswith(prefix):
                return n, runtime
    return None


def _representative(cid: str, procs: Sequence[_Proc], proc_root: str) -> _Proc:
    # Prefer processes of this container itself (not of a container nested in it), and among them
    # its init (PID 1 in the innermost pid namespace), else the lowest PID.
    own = [p for p in procs if p.refs and p.refs[-1].id == cid] or list(procs)
    for p in own:
        ns = procfs.ns_pids(proc_root, p.pid)
        if ns and len(ns) > 1 and ns[-1] == 1:
            return p
    return own[0]


def _cgroup_v2(cid: Optional[str], lines: List[cgroups.CgroupLine], proc_root: str,
               cgroup2_mount: Optional[procfs.Mount]) -> Tuple[Optional[str], Optional[int], Optional[int], str]:
    """(v2 path, v2 id, level, note): id only when the v2 group is the container's own."""
    path = cgroups.v2_path(lines)
    if path is None:
        return None, None, None, "its processes are in no cgroup v2 group (cgroup v1 only)"
    if cid is None:
        return path, None, None, "not a container"
    if cid not in {r.id for r in cgroups.containers_in_path(path)}:
        return path, None, None, (f"its cgroup v2 group {path} is not its own "
                                  f"(containers share it: cgroup v1 layout)")
    if path.startswith("/.."):
        return path, None, None, f"its cgroup v2 path {path} is outside the tracer's cgroup namespace"
    if cgroup2_mount is None:
        return path, None, None, "no cgroup2 file system is mounted where the tracer can see it"
    rel = path
    root = cgroup2_mount.root.rstrip("/")
    if root:
        if not (path == root or path.startswith(root + "/")):
            return path, None, None, (f"its cgroup v2 group {path} is not under the tracer's cgroup2 "
                                      f"mount ({cgroup2_mount.mount_point} shows {cgroup2_mount.root})")
        rel = path[len(root):]
    d = os.path.join(cgroup2_mount.mount_point, rel.lstrip("/"))
    try:
        ino = os.stat(d).st_ino
    except OSError as e:
        return path, None, None, f"its cgroup v2 directory {d} cannot be read ({e.strerror})"
    level = None
    own_ns = procfs.ns_id("/proc", os.getpid(), "cgroup")
    init_ns = procfs.host_ns_id(proc_root, "cgroup")
    # Levels count from the kernel's root cgroup, so the path must be absolute: the tracer must be
    # in the initial cgroup namespace, which only a proc_root that shows kthreadd (the initial pid
    # namespace) tells. In a kind node, PID 1 of proc_root is the node's systemd, whose cgroup
    # namespace (the tracer's too) starts at the node container's cgroup: paths are relative.
    if own_ns is not None and own_ns == init_ns and not root and _initial_pid_namespace(proc_root):
        level = cgroups.cgroup_level(path)
    return path, ino, level, f"own cgroup v2 group {d}"


def _initial_pid_namespace(proc_root: str) -> bool:
    """proc_root is the kernel's initial pid namespace (PID 2 is kthreadd)."""
    st = procfs.status_fields(proc_root, 2)
    return st is not None and st.get("Name") == "kthreadd" and st.get("PPid") == "0"


def _build(cid: Optional[str], runtime: str, driver: str, pids: List[int], rep: _Proc,
           proc_root: str, cgroup2_mount: Optional[procfs.Mount]) -> Container:
    path, cg_id, level, note = _cgroup_v2(cid, rep.lines, proc_root, cgroup2_mount)
    return Container(
        id=cid, runtime=runtime, cgroup_driver=driver, pids=tuple(sorted(pids)), pid=rep.pid,
        cgroup_paths=tuple((",".join(l.controllers), l.path) for l in rep.lines),
        cgroup_v2_path=path, cgroup_v2_id=cg_id, cgroup_v2_level=level, cgroup_v2_note=note,
        pidns=procfs.ns_id(proc_root, rep.pid, "pid"), mntns=procfs.ns_id(proc_root, rep.pid, "mnt"),
        root=os.path.join(procfs.pid_dir(proc_root, rep.pid), "root"), proc_root=proc_root)


def _mount(cgroup2_mount) -> Optional[procfs.Mount]:
    if cgroup2_mount is None:
        return procfs.find_cgroup2_mount()
    if isinstance(cgroup2_mount, procfs.Mount):
        return cgroup2_mount
    return procfs.Mount(str(cgroup2_mount), "/", "cgroup2")


def resolve_container(container_id: str, proc_root: Optional[str] = None,
                      host_root: Optional[str] = None, cgroup2_mount=None) -> Container:
    """The running container with this ID (see the module doc for the accepted forms).

    cgroup2_mount: a procfs.Mount or a directory where the host's cgroup2 hierarchy is mounted;
    default: found in /proc/self/mountinfo.
    """
    proc_root = proc_root or procfs.default_proc_root()
    host_root = host_root or os.environ.get(ENV_ROOT) or "/"
    prefix, hinted = parse_container_id(container_id)
    members: Dict[str, List[_Proc]] = {}
    refs: Dict[str, cgroups.ContainerRef] = {}
    for p in _scan(proc_root):
        for r in p.refs:
            if r.id.startswith(prefix):
                members.setdefault(r.id, []).append(p)
                refs.setdefault(r.id, r)
    if len(members) > 1:
        ids = ", ".join(sorted(i[:12] for i in members))
        raise AmbiguousContainerId(
            f"container ID {prefix!r} is ambiguous: it starts {len(members)} running containers ({ids}); "
            f"give more digits")
    if not members:
        stopped = _known_but_stopped(prefix, host_root)
        if stopped:
            full, runtime = stopped
            raise NoRunningProcess(f"container {full[:12]} ({runtime}) has no running process")
        raise ContainerNotFound(
            f"no running container with ID {prefix!r} on this host "
            f"(no process in {proc_root} is in a cgroup named after it)")
    (cid, procs), = members.items()
    ref = refs[cid]
    runtime = ref.runtime
    if runtime in ("kubernetes", "unknown") and hinted:
        runtime = hinted
    rep = _representative(cid, procs, proc_root)
    return _build(cid, runtime, ref.driver, [p.pid for p in procs], rep, proc_root, _mount(cgroup2_mount))


def resolve_pid(pid: int, proc_root: Optional[str] = None, cgroup2_mount=None) -> Container:
    """The container process `pid` is in, or the process itself when it is in no container."""
    proc_root = proc_root or procfs.default_proc_root()
    if pid <= 0 or not procfs.exists(proc_root, pid):
        raise NoSuchPid(f"no process with PID {pid} (looked in {proc_root})")
    text = procfs.read_text(os.path.join(procfs.pid_dir(proc_root, pid), "cgroup"))
    if text is None:
        raise NoSuchPid(f"no process with PID {pid} (it exited)")
    lines = cgroups.parse_cgroup_file(text)
    refs = cgroups.containers_of(lines)
    if refs:
        # The innermost container the process is in.
        try:
            return resolve_container(refs[-1].id, proc_root=proc_root, cgroup2_mount=cgroup2_mount)
        except (ContainerNotFound, NoRunningProcess):
            raise NoSuchPid(f"no process with PID {pid} (it exited)") from None
    me = _Proc(pid, lines, [])
    return _build(None, "host", "", [pid], me, proc_root, _mount(cgroup2_mount))


# ------------------------------------------------------------------------------------------------
# The in-kernel filter

def _foreign_in_ns(c: Container, kind: str, ns: NsId, limit: int = 5) -> List[int]:
    """PIDs in the same namespace that are not processes of the container (at most `limit`)."""
    out = []
    for pid in procfs.list_pids(c.proc_root):
        if pid in c.pids or procfs.ns_id(c.proc_root, pid, kind) != ns:
            continue
        text = procfs.read_text(os.path.join(procfs.pid_dir(c.proc_root, pid), "cgroup"))
        if text is None:
            continue
        if c.id in {r.id for r in cgroups.containers_of(cgroups.parse_cgroup_file(text))}:
            continue        # started after resolution: one of its own
        out.append(pid)
        if len(out) >= limit:
            break
    return out


def _layout(c: Container) -> str:
    v1 = any(ctl for ctl, _ in c.cgroup_paths)
    v2 = c.cgroup_v2_path is not None
    version = "cgroup v1+v2 (hybrid)" if v1 and v2 else ("cgroup v2" if v2 else "cgroup v1")
    driver = f", {c.cgroup_driver} driver" if c.cgroup_driver else ""
    return f"{version}, {c.runtime}{driver}"


def choose_filter(c: Container, kinds: Iterable[str] = FILTER_KINDS) -> TaskFilter:
    """The in-kernel filter for container c on this host: the first of `kinds` that isolates it.

    kinds: the filters the engine can emit, in order of preference; leave out "mntns" when the
    running kernel's BTF is not available.
    """
    kinds = tuple(kinds)
    for k in kinds:
        if k not in FILTER_KINDS:
            raise ValueError(f"unknown filter kind {k!r}")
    pidns_own = c.pidns is not None and c.pidns != procfs.host_ns_id(c.proc_root, "pid")
    # with a pid namespace of its own, the filter also says how to print container PIDs
    ns_fields = dict(pidns_dev=c.pidns.kernel_dev, pidns_ino=c.pidns.ino) if pidns_own else {}  # type: ignore[union-attr]
    if c.id is None:
        return TaskFilter(kind="tgid", tgid=c.pid, **ns_fields,
                          reason=f"PID {c.pid} is in no container: only that process is traced")
    why_not: List[str] = []
    for k in kinds:
        found = _KIND_FILTERS[k](c, ns_fields)
        if isinstance(found, str):
            why_not.append(found)
            continue
        kind, values, using = found
        return TaskFilter(kind=kind, **values, **ns_fields,
                          reason=f"{_layout(c)}: " + "".join(w + "; " for w in why_not) + using)
    raise NoUsableFilter(f"cannot scope probes to {c.describe()}: " + "; ".join(why_not))


# Each kind: (kind, the filter's values, why it is used), or why it cannot be used.
KindFound = Union[str, Tuple[str, Dict[str, int], str]]


def _cgroup_filter(c: Container, ns_fields: Dict[str, int]) -> KindFound:
    if c.cgroup_v2_id is None:
        return f"no cgroup filter: {c.cgroup_v2_note}"
    level = c.cgroup_v2_level
    how = f"its ancestor at level {level}" if level is not None else "exact id"
    return ("cgroup", {"cgroup_id": c.cgroup_v2_id, "cgroup_level": level if level is not None else -1},
            f"the container has its own cgroup v2 group {c.cgroup_v2_path} (id {c.cgroup_v2_id}); "
            f"filtering on the task's cgroup id ({how})")


def _namespace_problem(c: Container, kind: str, ns: Optional[NsId], what: str) -> Optional[str]:
    """Why the container's namespace of `kind` ("pid", "mnt") does not tell it apart, if it does not."""
    if ns is None:
        return f"no {what} filter: its {what} cannot be read"
    if ns == procfs.host_ns_id(c.proc_root, kind):
        return f"no {what} filter: it shares the host's {what}"
    others = _foreign_in_ns(c, kind, ns)
    if others:
        return f"no {what} filter: its {what} also holds other processes (PIDs {', '.join(map(str, others))})"
    return None


def _pidns_filter(c: Container, ns_fields: Dict[str, int]) -> KindFound:
    problem = _namespace_problem(c, "pid", c.pidns, "pid namespace")
    if problem:
        return problem
    return ("pidns", {}, f"using its own pid namespace (dev {c.pidns.kernel_dev}, inode {c.pidns.ino})")  # type: ignore[union-attr]


def _mntns_filter(c: Container, ns_fields: Dict[str, int]) -> KindFound:
    problem = _namespace_problem(c, "mnt", c.mntns, "mount namespace")
    if problem:
        return problem
    return ("mntns", {"mntns_ino": c.mntns.ino}, f"using its mount namespace (inode {c.mntns.ino})")  # type: ignore[union-attr]


_KIND_FILTERS = {"cgroup": _cgroup_filter, "pidns": _pidns_filter, "mntns": _mntns_filter}


class FilterWatcher:
    """Follows a container across restarts: a restarted container keeps its ID but gets a new
    cgroup and new namespaces. Call poll() every second or so; it returns a TaskFilter (of the kind
    first chosen) when the values the program must use changed, else None.

    While the container has no process, poll() returns a filter that matches nothing (all ids 0, and
    no cgroup level: see poll()):
    namespace inode numbers are reused once a namespace is freed (seen here: a restarted container's
    new pid namespace got the old one's number), so a stale pidns/mntns value could otherwise come to
    name some other container's namespace. Cgroup ids are not reused.
    """

    def __init__(self, container: Container, current: TaskFilter, cgroup2_mount=None) -> None:
        self.container = container
        self.current = current
        self._mount = cgroup2_mount

    def _unchanged(self) -> bool:
        # Cheap check first: the process the values came from still runs in the same pid namespace
        # and cgroup, so the container has not restarted (a restart replaces every process).
        c = self.container
        if self.current.cgroup_id == 0 and self.current.pidns_ino == 0 and self.current.mntns_ino == 0:
            return False            # blanked while the container was down
        if procfs.ns_id(c.proc_root, c.pid, "pid") != c.pidns:
            return False
        text = procfs.read_text(os.path.join(procfs.pid_dir(c.proc_root, c.pid), "cgroup"))
        return text is not None and c.id in {r.id for r in cgroups.containers_of(cgroups.parse_cgroup_file(text))}

    def poll(self) -> Optional[TaskFilter]:
        if self.container.id is None or self._unchanged():
            return None
        try:
            c = resolve_container(self.container.id, proc_root=self.container.proc_root,
                                  cgroup2_mount=self._mount)
            f = choose_filter(c, kinds=(self.current.kind,))
        except (ContainerNotFound, NoRunningProcess):
            c = self.container
            # no cgroup level: the ancestor at a level deeper than a task's own cgroup is id 0, so
            # (level, id 0) would match every task above the container's level (the host's)
            f = TaskFilter(kind=self.current.kind,
                           reason=f"{c.describe()} has no running process: nothing matches until it is back")
        except ContainerError:
            return None
        if replace(f, reason="") == replace(self.current, reason=""):
            return None
        self.container, self.current = c, f
        return f
