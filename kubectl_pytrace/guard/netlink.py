"""rtnetlink, the few messages the firewall and the shaper need, with struct and a socket.

    with Netlink() as nl:                       # bound to the caller's network namespace
        nl.xdp_state(ifindex) -> XdpState(prog_id, mode)
        nl.set_xdp(ifindex, prog_fd, flags)     # attach (fd -1: detach) without a link
        nl.qdiscs(ifindex) -> [Qdisc(kind, handle, parent)]
        nl.add_qdisc(ifindex, "clsact") / nl.del_qdisc(...)
        nl.add_bpf_filter(ifindex, parent, prog_fd, name, prio) / nl.bpf_filters(...) / nl.del_filter(...)

Used where the kernel has no BPF link for a hook (XDP links: 5.9, tcx: 6.6), to see what a device
has attached, and to detach another program with --force. Errors become NetlinkError with the
kernel's extended-ack message when it gives one ("Can't replace active BPF XDP link").
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

RTM_GETLINK, RTM_SETLINK = 18, 19
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
SOL_NETLINK, NETLINK_EXT_ACK = 270, 11
NLMSGERR_ATTR_MSG = 1

IFLA_XDP = 43
IFLA_XDP_FD, IFLA_XDP_ATTACHED, IFLA_XDP_FLAGS, IFLA_XDP_PROG_ID = 1, 2, 3, 4
IFLA_XDP_EXPECTED_FD = 8
XDP_FLAGS_REPLACE = 16
XDP_MODES = {0: "none", 1: "driver", 2: "generic", 3: "offload", 4: "several"}

TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_FD, TCA_BPF_NAME, TCA_BPF_FLAGS, TCA_BPF_ID = 6, 7, 8, 11
TCA_BPF_FLAG_ACT_DIRECT = 1
TC_H_ROOT, TC_H_CLSACT = 0xFFFFFFFF, 0xFFFFFFF1
TC_H_MIN_INGRESS, TC_H_MIN_EGRESS = 0xFFF2, 0xFFF3
CLSACT_HANDLE = 0xFFFF0000
ETH_P_ALL = 0x0003

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_TCMSG = struct.Struct("=BxxxiIII")


class NetlinkError(OSError):
    def __init__(self, err: int, message: str = ""):
        super().__init__(err, message or os.strerror(err))
        self.kernel_message = message


def clsact_parent(direction: str) -> int:
    """The clsact hook of a direction, as a filter's parent handle."""
    return (TC_H_CLSACT & 0xFFFF0000) | (TC_H_MIN_EGRESS if direction == "egress" else TC_H_MIN_INGRESS)


def _attr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _attrs(data: bytes) -> Dict[int, bytes]:
    out, i = {}, 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            break
        out[kind & ~NLA_F_NESTED] = data[i + 4:i + length]
        i += (length + 3) & ~3
    return out


def _u32(data: Optional[bytes]) -> int:
    return struct.unpack("=I", data[:4])[0] if data and len(data) >= 4 else 0


def _str(data: Optional[bytes]) -> str:
    return (data or b"").split(b"\0", 1)[0].decode(errors="replace")


@dataclass(frozen=True)
class XdpState:
    prog_id: int  # 0: none
    mode: str  # none, driver, generic, offload, several


@dataclass(frozen=True)
class Qdisc:
    kind: str
    handle: int
    parent: int


@dataclass(frozen=True)
class BpfFilter:
    name: str
    prog_id: int
    prio: int
    handle: int


class Netlink:
    """A NETLINK_ROUTE socket in the network namespace of the thread that made it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        except OSError:
            pass  # kernels before 4.12: errors without messages
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- requests ----------------------------------------------------------------------------
    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self.seq += 1
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, flags | NLM_F_REQUEST, self.seq, 0) + body)
        return self.seq

    def _replies(self, seq: int) -> Iterator[Tuple[int, bytes]]:
        """(type, payload) of every reply to request seq until its end (an ack, an error, DONE)."""
        while True:
            data = self.sock.recv(1 << 16)
            i = 0
            while i + _HDR.size <= len(data):
                length, kind, flags, mseq, _ = _HDR.unpack_from(data, i)
                payload = data[i + _HDR.size:i + length]
                i += (length + 3) & ~3
                if mseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    self._check_error(flags, payload)
                    return
                yield kind, payload

    @staticmethod
    def _check_error(flags: int, payload: bytes) -> None:
        code = -struct.unpack_from("=i", payload)[0]
        if code == 0:
            return
        message = ""
        if flags & NLM_F_ACK_TLVS:
            skip = 4 + (_HDR.size if flags & NLM_F_CAPPED else struct.unpack_from("=I", payload, 4)[0])
            message = _str(_attrs(payload[skip:]).get(NLMSGERR_ATTR_MSG))
        raise NetlinkError(code, message)

    def request(self, kind: int, flags: int, body: bytes) -> List[Tuple[int, bytes]]:
        return list(self._replies(self._send(kind, flags | NLM_F_ACK, body)))

    def dump(self, kind: int, body: bytes) -> List[Tuple[int, bytes]]:
        return list(self._replies(self._send(kind, NLM_F_DUMP, body)))

    # ---- links and XDP -----------------------------------------------------------------------
    def xdp_state(self, ifindex: int) -> XdpState:
        for _, payload in self.request(RTM_GETLINK, 0, _IFINFO.pack(0, 0, ifindex, 0, 0)):
            xdp = _attrs(_attrs(payload[_IFINFO.size:]).get(IFLA_XDP, b""))
            attached = xdp.get(IFLA_XDP_ATTACHED, b"\0")[0]
            return XdpState(_u32(xdp.get(IFLA_XDP_PROG_ID)), XDP_MODES.get(attached, str(attached)))
        raise NetlinkError(errno.ENODEV)

    def set_xdp(self, ifindex: int, prog_fd: int, flags: int = 0, expected_fd: Optional[int] = None) -> None:
        """Attaches prog_fd (-1: detaches) without a link; with expected_fd (XDP_FLAGS_REPLACE) only
        when that program is the one attached."""
        nested = _attr(IFLA_XDP_FD, struct.pack("=i", prog_fd))
        if expected_fd is not None:
            flags |= XDP_FLAGS_REPLACE
            nested += _attr(IFLA_XDP_EXPECTED_FD, struct.pack("=i", expected_fd))
        nested += _attr(IFLA_XDP_FLAGS, struct.pack("=I", flags))
        body = _IFINFO.pack(0, 0, ifindex, 0, 0) + _attr(IFLA_XDP | NLA_F_NESTED, nested)
        self.request(RTM_SETLINK, 0, body)

    # ---- qdiscs and filters ------------------------------------------------------------------
    def qdiscs(self, ifindex: int) -> List[Qdisc]:
        out = []
        for _, payload in self.dump(RTM_GETQDISC, _TCMSG.pack(0, 0, 0, 0, 0)):
            _, index, handle, parent, _ = _TCMSG.unpack_from(payload)
            if index == ifindex:
                out.append(Qdisc(_str(_attrs(payload[_TCMSG.size:]).get(TCA_KIND)), handle, parent))
        return out

    def root_qdisc(self, ifindex: int) -> Optional[Qdisc]:
        return next((q for q in self.qdiscs(ifindex) if q.parent == TC_H_ROOT), None)

    def add_qdisc(self, ifindex: int, kind: str, parent: int = TC_H_CLSACT, handle: int = CLSACT_HANDLE,
                  replace: bool = False) -> None:
        flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        body = _TCMSG.pack(0, ifindex, handle, parent, 0) + _attr(TCA_KIND, kind.encode() + b"\0")
        self.request(RTM_NEWQDISC, flags, body)

    def del_qdisc(self, ifindex: int, parent: int = TC_H_CLSACT, handle: int = CLSACT_HANDLE) -> None:
        self.request(RTM_DELQDISC, 0, _TCMSG.pack(0, ifindex, handle, parent, 0))

    def add_bpf_filter(self, ifindex: int, parent: int, prog_fd: int, name: str, prio: int) -> None:
        """A direct-action cls_bpf filter for every protocol at (parent, prio)."""
        opts = (_attr(TCA_BPF_FD, struct.pack("=I", prog_fd)) + _attr(TCA_BPF_NAME, name.encode() + b"\0")
                + _attr(TCA_BPF_FLAGS, struct.pack("=I", TCA_BPF_FLAG_ACT_DIRECT)))
        info = (prio << 16) | socket.htons(ETH_P_ALL)
        body = (_TCMSG.pack(0, ifindex, 0, parent, info) + _attr(TCA_KIND, b"bpf\0")
                + _attr(TCA_OPTIONS | NLA_F_NESTED, opts))
        self.request(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, body)

    def bpf_filters(self, ifindex: int, parent: int) -> List[BpfFilter]:
        out = []
        for _, payload in self.dump(RTM_GETTFILTER, _TCMSG.pack(0, ifindex, 0, parent, 0)):
            _, _, handle, _, info = _TCMSG.unpack_from(payload)
            attrs = _attrs(payload[_TCMSG.size:])
            if _str(attrs.get(TCA_KIND)) != "bpf" or not handle:
                continue
            opts = _attrs(attrs.get(TCA_OPTIONS, b""))
            out.append(BpfFilter(_str(opts.get(TCA_BPF_NAME)), _u32(opts.get(TCA_BPF_ID)), info >> 16, handle))
        return out

    def del_filter(self, ifindex: int, parent: int, prio: int) -> None:
        info = (prio << 16) | socket.htons(ETH_P_ALL)
        self.request(RTM_DELTFILTER, 0, _TCMSG.pack(0, ifindex, 0, parent, info))
