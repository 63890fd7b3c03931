"""Where a firewall or a shaper attaches: a network namespace and an interface in it.

    ns = NetTarget.from_netns("blue")            # `ip netns add blue`: /run/netns/blue
    ns = NetTarget.from_container("3f2a...")     # a container's (a pod's) namespace, by its ID
    ns = NetTarget.from_pid(4242) / NetTarget.host()
    with ns.entered():                           # this thread inside it: ifindex, netlink, attach
        ifindex = ns.ifindex("eth0")

A pod's interface is found inside the pod's network namespace (its eth0), entered with setns(2)
through /proc/<pid>/ns/net of one of its processes: that device is the pod's own, XDP on it sees
exactly the traffic that enters the pod and tc egress exactly what leaves it (the host side of
the pod's veth pair sees them the other way round, and a CNI may have no veth at all). A pod with
hostNetwork (a container with --network host) has the host's namespace: a program on its
interfaces would act on the whole node's traffic, so it is refused (target the node instead).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from dataclasses import dataclass
from typing import Iterator, List, Optional

from kubectl_pytrace.errors import ContainerError, LookupFailed, TraceError, UsageError
from kubectl_pytrace.kernel import procfs

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
_libc = ctypes.CDLL(None, use_errno=True)


class NoSuchInterface(LookupFailed):
    pass


class HostNetwork(ContainerError):
    """The target shares the host's network namespace (hostNetwork)."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise TraceError(f"cannot enter the network namespace: {os.strerror(err)}",
                         hint="entering another network namespace needs root (CAP_SYS_ADMIN)")


@dataclass(frozen=True)
class NetTarget:
    """A network namespace by a path to its nsfs file (None: the one this process is in)."""

    path: Optional[str]
    description: str  # "network namespace blue", "container 3f2a1b2c3d4e", "this host"
    inode: int = 0

    def place(self) -> str:
        """For "interface eth0 in ...": "the network namespace blue", "this host's network namespace"."""
        return "this host's network namespace" if self.description == "this host" else f"the {self.description}"

    @staticmethod
    def host() -> "NetTarget":
        return NetTarget(None, "this host", os.stat("/proc/self/ns/net").st_ino)

    @staticmethod
    def from_netns(name: str) -> "NetTarget":
        if not name or "/" in name or name in (".", ".."):
            raise UsageError(f"invalid network namespace name {name!r}")
        path = os.path.join(NETNS_RUN_DIR, name)
        try:
            ino = os.stat(path).st_ino
        except OSError:
            raise LookupFailed(f"no network namespace {name!r} ({path} does not exist)",
                             hint="`ip netns list` shows the named network namespaces") from None
        return NetTarget(path, f"network namespace {name}", ino)

    @staticmethod
    def from_pid(pid: int, what: str = "", proc_root: Optional[str] = None) -> "NetTarget":
        root = proc_root or procfs.default_proc_root()
        ns = procfs.ns_id(root, pid, "net")
        if ns is None:
            raise ContainerError(f"cannot read the network namespace of process {pid} "
                                 f"({root}/{pid}/ns/net)")
        target = NetTarget(os.path.join(procfs.pid_dir(root, pid), "ns", "net"), what or f"process {pid}", ns.ino)
        host = procfs.host_ns_id(root, "net")
        if host is not None and host.ino == ns.ino:
            raise HostNetwork(
                f"{target.description} uses the host's network namespace (hostNetwork): its interfaces "
                f"are the node's, so a program on them would act on all of the node's traffic",
                hint="target the node (node/NAME --interface IFACE, or --local --interface IFACE) if "
                     "that is what you want")
        return target

    @staticmethod
    def from_container(container_id: str, proc_root: Optional[str] = None, what: str = "") -> "NetTarget":
        from kubectl_pytrace.containers.resolve import resolve_container

        c = resolve_container(container_id, proc_root=proc_root)
        return NetTarget.from_pid(c.pid, what or f"container {c.short_id}", proc_root)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """This thread in the namespace for the block (sockets made inside stay bound to it)."""
        if self.path is None:
            yield
            return
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                target = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise TraceError(f"the {self.description} is gone ({self.path}: {e.strerror})") from None
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)

    def ifindex(self, name: str) -> int:
        """The interface's index, in the namespace this thread is in (call inside entered())."""
        try:
            return socket.if_nametoindex(name)
        except OSError:
            raise NoSuchInterface(f"no interface {name!r} in {self.place()}",
                                  hint=f"its interfaces: {', '.join(interfaces()) or '(none)'}") from None


def interfaces() -> List[str]:
    """The interfaces of the namespace this thread is in."""
    return [name for _, name in socket.if_nameindex()]
