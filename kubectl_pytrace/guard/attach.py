"""Attaching a loaded program to an interface's XDP hook or tc egress hook, and taking it off.

    a = XdpAttachment.attach(target, "eth0", prog_fd, force=False)
    a.describe()   -> "XDP link, driver mode"
    a.alive()      -> False once the device is gone
    a.detach()

BPF links where the kernel has them (XDP: 5.9, tcx: 6.6): the link is a file descriptor of this
process, so the kernel detaches the program when the process ends, however it ends (SIGKILL, a
crash, an OOM kill). Older kernels get netlink (XDP) and a clsact qdisc with a cls_bpf filter
(tc): those stay attached if the process is killed outright, so the next run finds and reports
them. PYTRACE_ATTACH=netlink chooses the netlink way on any kernel (to test it).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from kubectl_pytrace.bpf.syscalls import BPFError
from kubectl_pytrace.errors import TraceError
from kubectl_pytrace.guard import bpflink
from kubectl_pytrace.guard.netlink import Netlink, NetlinkError, clsact_parent
from kubectl_pytrace.guard.netns import NetTarget

XDP_FLAGS_UPDATE_IF_NOEXIST, XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE = 1, 2, 4
FILTER_PRIO = 0xC0DE  # our cls_bpf filters' priority: late in the chain, and how we know them
NO_LINK = {errno.EINVAL, errno.EOPNOTSUPP, 524}  # 524: the kernel's internal ENOTSUPP


class XdpBusy(TraceError):
    """The interface has an XDP program already (and --force was not given)."""


def _netlink_only() -> bool:
    return os.environ.get("PYTRACE_ATTACH") == "netlink"


def _no_link(e: BPFError) -> bool:
    return e.errno in NO_LINK


def _open(target: NetTarget, ifname: str) -> Tuple[int, Netlink]:
    """The interface's index and a netlink socket, both of the target's namespace."""
    with target.entered():
        return target.ifindex(ifname), Netlink()


def _or_detach(a, steps: Callable[[], None]):
    """Runs the attaching steps; on any failure takes off what they did."""
    try:
        steps()
    except BaseException:
        a.detach()
        raise
    return a


@dataclass
class _OnInterface:
    target: NetTarget
    ifname: str
    ifindex: int
    prog_fd: int
    nl: Netlink  # bound to the target's namespace
    link_fd: Optional[int] = None  # the BPF link, when the kernel has one for the hook

    def where(self) -> str:
        return f"interface {self.ifname} in {self.target.place()}"

    def alive(self) -> bool:
        """Still attached (False once the device, or its namespace, is gone)."""
        try:
            if self.link_fd is not None:
                return bpflink.link_info(self.link_fd).ifindex != 0
            return self._attached_otherwise()
        except (OSError, BPFError):
            return False

    def _attached_otherwise(self) -> bool:
        raise NotImplementedError

    def _close_link(self) -> bool:
        if self.link_fd is None:
            return False
        os.close(self.link_fd)
        self.link_fd = None
        return True


@dataclass
class XdpAttachment(_OnInterface):
    prog_id: int = 0
    mode: str = ""
    removed: str = ""  # the program --force took off, described

    @staticmethod
    def attach(target: NetTarget, ifname: str, prog_fd: int, force: bool = False) -> "XdpAttachment":
        ifindex, nl = _open(target, ifname)
        a = XdpAttachment(target, ifname, ifindex, prog_fd, nl, prog_id=bpflink.prog_info_fd(prog_fd).id)
        return _or_detach(a, lambda: (a._replace_existing(force), a._attach()))

    def _replace_existing(self, force: bool) -> None:
        state = self.nl.xdp_state(self.ifindex)
        if not state.prog_id:
            return
        prog = bpflink.prog_info(state.prog_id)
        what = f"{prog.describe() if prog else f'id {state.prog_id}'}, {state.mode} mode"
        if not force:
            raise XdpBusy(f"{self.where()} already has an XDP program ({what})",
                          hint="--force detaches it first (it is not put back afterwards); `bpftool net` "
                               "shows who attached it")
        self._remove(state.prog_id, state.mode)
        self.removed = what

    def _remove(self, prog_id: int, mode: str) -> None:
        flags = {"generic": XDP_FLAGS_SKB_MODE, "driver": XDP_FLAGS_DRV_MODE}.get(mode, 0)
        try:
            self.nl.set_xdp(self.ifindex, -1, flags)
        except NetlinkError as e:
            if e.errno != errno.EBUSY:
                raise TraceError(f"cannot detach the XDP program of {self.where()}: {e}") from None
            link_id = bpflink.find_link(bpflink.LINK_TYPE_XDP, prog_id)  # held by a link
            if link_id is None:
                raise TraceError(f"cannot detach the XDP program of {self.where()}: {e}") from None
            bpflink.detach_link(link_id)

    def _attach(self) -> None:
        if not _netlink_only():
            try:
                with self.target.entered():
                    self.link_fd = bpflink.link_create(self.prog_fd, self.ifindex, bpflink.BPF_XDP)
            except BPFError as e:
                if not _no_link(e):
                    raise TraceError(f"cannot attach XDP to {self.where()}: {e.strerror}") from None
        if self.link_fd is None:
            try:
                self.nl.set_xdp(self.ifindex, self.prog_fd, XDP_FLAGS_UPDATE_IF_NOEXIST)
            except NetlinkError as e:
                raise TraceError(f"cannot attach XDP to {self.where()}: {e.strerror}") from None
        self.mode = self.nl.xdp_state(self.ifindex).mode

    def describe(self) -> str:
        how = "BPF link" if self.link_fd is not None else "netlink, not a link: stays if the tracer is killed"
        return f"XDP ({how}, {self.mode} mode)"

    def _attached_otherwise(self) -> bool:
        return self.nl.xdp_state(self.ifindex).prog_id == self.prog_id

    def detach(self) -> None:
        if not self._close_link() and self.mode:
            try:
                if self.nl.xdp_state(self.ifindex).prog_id == self.prog_id:
                    self.nl.set_xdp(self.ifindex, -1, expected_fd=self.prog_fd)
            except OSError:
                pass  # the device is gone, and the program with it
            self.mode = ""
        self.nl.close()


@dataclass
class TcAttachment(_OnInterface):
    """A program on a device's tc egress (or ingress) hook."""

    direction: str = "egress"
    filter_added: bool = False
    made_clsact: bool = False

    @staticmethod
    def attach(target: NetTarget, ifname: str, prog_fd: int, name: str, direction: str = "egress",
               force: bool = False) -> "TcAttachment":
        ifindex, nl = _open(target, ifname)
        a = TcAttachment(target, ifname, ifindex, prog_fd, nl, direction=direction)
        return _or_detach(a, lambda: (not _netlink_only() and a._link()) or a._clsact(name, force))

    def _link(self) -> bool:
        kind = bpflink.BPF_TCX_EGRESS if self.direction == "egress" else bpflink.BPF_TCX_INGRESS
        try:
            with self.target.entered():
                self.link_fd = bpflink.link_create(self.prog_fd, self.ifindex, kind)
            return True
        except BPFError as e:
            if _no_link(e):
                return False
            raise TraceError(f"cannot attach to tc {self.direction} of {self.where()}: {e.strerror}") from None

    def _clsact(self, name: str, force: bool) -> None:
        parent = clsact_parent(self.direction)
        try:
            self.nl.add_qdisc(self.ifindex, "clsact")
            self.made_clsact = True
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise TraceError(f"cannot add a clsact qdisc to {self.where()}: {e}") from None
        stale = [f for f in self.nl.bpf_filters(self.ifindex, parent) if f.prio == FILTER_PRIO]
        if stale and not force:
            raise TraceError(f"{self.where()} has a tc {self.direction} filter of kubectl-pytrace already "
                             f"({stale[0].name}, program id {stale[0].prog_id}): another shaper runs there, or a "
                             f"killed one left it", hint="--force replaces it")
        for f in stale:
            self.nl.del_filter(self.ifindex, parent, f.prio)
        try:
            self.nl.add_bpf_filter(self.ifindex, parent, self.prog_fd, name, FILTER_PRIO)
        except NetlinkError as e:
            raise TraceError(f"cannot add a tc {self.direction} filter to {self.where()}: {e}") from None
        self.filter_added = True

    def describe(self) -> str:
        if self.link_fd is not None:
            return f"tc {self.direction} (tcx BPF link)"
        return f"tc {self.direction} (clsact qdisc + cls_bpf filter, not a link: stays if the tracer is killed)"

    def _attached_otherwise(self) -> bool:
        return any(f.prio == FILTER_PRIO for f in self.nl.bpf_filters(self.ifindex, clsact_parent(self.direction)))

    def detach(self) -> None:
        self._close_link()
        self._remove_filter()
        self.nl.close()

    def _remove_filter(self) -> None:
        try:
            if self.filter_added:
                self.nl.del_filter(self.ifindex, clsact_parent(self.direction), FILTER_PRIO)
            if self.made_clsact and not self.nl.bpf_filters(self.ifindex, clsact_parent("egress")) and \
                    not self.nl.bpf_filters(self.ifindex, clsact_parent("ingress")):
                self.nl.del_qdisc(self.ifindex)
        except OSError:
            pass  # the device is gone, and the filter with it
        self.filter_added = self.made_clsact = False
