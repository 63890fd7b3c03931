"""Egress traffic shaping with a tc program: a rate enforced in a map, counters of what it did.

    sh = Shaper.start(target, "eth0", rate_bps=1_000_000, burst=None, to=[CIDR...], mode="auto")
    sh.report() -> {"mode": "police", "passed": {...}, "delayed": {...}, "dropped": {...}, ...}
    sh.close()

One state word, the theoretical departure time (TAT) of the next byte at the rate (GCRA, the
virtual-clock form of a token bucket): a packet of L bytes costs L / rate seconds; it may leave at
max(now, TAT), and TAT advances by its cost with one atomic add, so every CPU shares one bucket.

- "police" (any kernel): a packet whose departure would be more than the burst tolerance ahead
  of now is dropped (its cost given back). TCP sees a local drop and backs off; the rate holds.
- "edt" (earliest departure time): the packet is stamped skb->tstamp = its departure time and
  the fq qdisc holds it until then; only packets beyond the horizon are dropped. It needs fq on
  the interface: "auto" uses it when the interface has fq, or puts fq there when the kernel has
  it and the interface has a default qdisc (noqueue, pfifo_fast, fq_codel), and removes it at the
  end; otherwise auto polices, and says why.

Rates count whole frames as the hook sees them (an Ethernet header included; a GSO packet is one
large frame). Only packets to the --to networks are shaped (default: all); the others pass,
counted as "other".
"""

from __future__ import annotations

import errno
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from kubectl_pytrace.errors import TraceError, UserError
from kubectl_pytrace.guard import rules as R
from kubectl_pytrace.guard.attach import TcAttachment
from kubectl_pytrace.guard.netlink import TC_H_ROOT, Netlink, NetlinkError
from kubectl_pytrace.guard.netns import NetTarget
from kubectl_pytrace.guard.program import LoadedProgram

PROGRAM = "pytrace_shape"
MODES = ("auto", "police", "edt")
MAX_DESTS = 1024
GSO_MAX = 65536 + 1514  # the largest frame the hook may see (a GSO packet): the smallest burst
DEFAULT_BURST_TIME = 0.25  # seconds of the rate: TCP stalls ~200 ms (its minimum RTO) after a local drop
DEFAULT_BURST_PACKETS = 2  # and at least this many of the largest packets (with one, 2 Mbit/s gave 0.68 of the rate)
EDT_HORIZON_NS = 2_000_000_000  # EDT: packets due later than this are dropped (fq's own is 10 s)
DEFAULT_ROOTS = ("noqueue", "pfifo_fast", "fq_codel")  # root qdiscs auto may replace with fq

SOURCE = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/pkt_cls.h>

#define BE16(x) ((u16)__builtin_bswap16(x))
enum { SH_PASSED, SH_DELAYED, SH_DROPPED, SH_OTHER, SH_SLOTS };

struct sh_config { u64 ns_per_kib; u64 tolerance_ns; u32 edt; u32 all; };
struct sh_state { u64 tat; };
struct sh_key { u32 prefixlen; u8 family; u8 pad[3]; u32 addr[4]; };
struct sh_counter { u64 packets; u64 bytes; };

BPF_ARRAY(sh_config, struct sh_config, 1);
BPF_ARRAY(sh_state, struct sh_state, 1);
BPF_LPM_TRIE(sh_dests, struct sh_key, u32, %(max_dests)d);
BPF_PERCPU_ARRAY(sh_counters, struct sh_counter, SH_SLOTS);

static __always_inline int sh_count(u32 slot, u64 len, int verdict) {
    struct sh_counter *c = sh_counters.lookup(&slot);
    if (c) {
        c->packets += 1;
        c->bytes += len;
    }
    return verdict;
}

/* 1 when the packet goes to one of the --to networks */
static __always_inline int sh_to_shape(struct __sk_buff *skb) {
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    struct sh_key key = {.prefixlen = 32 + 128};
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return 0;
    if (eth->h_proto == BE16(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end)
            return 0;
        key.family = 4;
        key.addr[0] = ip->daddr;
    } else if (eth->h_proto == BE16(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end)
            return 0;
        key.family = 6;
        __builtin_memcpy(key.addr, &ip6->daddr, 16);
    } else {
        return 0;
    }
    return sh_dests.lookup(&key) != 0;
}

int pytrace_shape(struct __sk_buff *skb) {
    u32 zero = 0;
    u64 len = skb->len;
    struct sh_config *cfg = sh_config.lookup(&zero);
    struct sh_state *st = sh_state.lookup(&zero);
    if (!cfg || !st || !cfg->ns_per_kib)
        return TC_ACT_UNSPEC;
    if (!cfg->all && !sh_to_shape(skb))
        return sh_count(SH_OTHER, len, TC_ACT_UNSPEC);
    u64 now = bpf_ktime_get_ns();
    u64 cost = (len * cfg->ns_per_kib) >> 10;
    if ((s64)(st->tat - now) < 0)
        st->tat = now;  /* idle: the bucket is full (a race here only loses idle time) */
    u64 depart = __sync_fetch_and_add(&st->tat, cost);
    if ((s64)(depart - now) < 0)
        depart = now;
    u64 limit = cfg->edt ? %(horizon)dULL : cfg->tolerance_ns;
    if (depart + cost - now > limit) {
        __sync_fetch_and_add(&st->tat, -cost);
        return sh_count(SH_DROPPED, len, TC_ACT_SHOT);
    }
    if (cfg->edt && depart > now && depart > skb->tstamp) {
        skb->tstamp = depart;
        return sh_count(SH_DELAYED, len, TC_ACT_UNSPEC);
    }
    return sh_count(SH_PASSED, len, TC_ACT_UNSPEC);
}
""" % {"max_dests": MAX_DESTS, "horizon": EDT_HORIZON_NS}

CONFIG = struct.Struct("=QQII")
DEST_KEY = struct.Struct("=IBxxx16s")
COUNTER = struct.Struct("=QQ")
SLOTS = ("passed", "delayed", "dropped", "other")

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps|b|)?\s*$", re.I)


class RateError(UserError):
    pass


def parse_rate(text: str) -> int:
    """tc's units: '1mbit' = 1,000,000 bits/s, 'kbit', 'gbit'; 'mbps' = megabytes/s; bare = bits/s."""
    m = _RATE.match(text)
    if not m:
        raise RateError(f"invalid rate {text!r}", hint="rates look like 1mbit, 500kbit, 2gbit or 10mbps (bytes)")
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}[m.group(2).lower()]
    bits = float(m.group(1)) * scale * (8 if (m.group(3) or "").lower() == "bps" else 1)
    if bits < 8000:
        raise RateError(f"rate {text!r} is below 8kbit, which this shaper does not do")
    return int(bits)


_SIZE = re.compile(r"^\s*(\d+)\s*(k|kb|kib|m|mb|mib|b)?\s*$", re.I)


def parse_size(text: str) -> int:
    """A burst size as tc writes it: bytes, or k/kb (1024 bytes), m/mb (1024 k)."""
    m = _SIZE.match(text)
    if not m:
        raise RateError(f"invalid size {text!r}", hint="sizes look like 100000, 64k or 1m (bytes)")
    unit = (m.group(2) or "b").lower()[0]
    return int(m.group(1)) * {"b": 1, "k": 1024, "m": 1024 * 1024}[unit]


def dest_key(net: R.Network) -> bytes:
    return DEST_KEY.pack(32 + net.prefixlen, 4 if net.version == 4 else 6, net.network_address.packed.ljust(16, b"\0"))


# ---- the mode: EDT where fq is, else the policer --------------------------------------------

def kernel_has_fq() -> bool:
    """Whether this kernel can make an fq qdisc: tried on the loopback device of a network namespace
    of a thread's own, which goes away with the thread (a module is loaded if there is one)."""
    result: List[bool] = []

    def probe() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET, this thread only
            result.append(False)
            return
        try:
            with Netlink() as nl:
                nl.add_qdisc(1, "fq", parent=TC_H_ROOT, handle=0, replace=True)
            result.append(True)
        except OSError as e:
            result.append(e.errno != errno.ENOENT and False)  # ENOENT: "qdisc kind is unknown"

    t = threading.Thread(target=probe, name="fq-probe")
    t.start()
    t.join()
    return bool(result and result[0])


@dataclass
class ModeChoice:
    mode: str  # police | edt
    reason: str
    install_fq: bool = False  # auto/edt put fq on the interface: remove it at the end


def choose_mode(requested: str, nl: Netlink, ifindex: int, ifname: str) -> ModeChoice:
    if requested == "police":
        return ModeChoice("police", "--mode police: token-bucket policer")
    root = nl.root_qdisc(ifindex)
    kind = root.kind if root else "none"
    if kind == "fq":
        return ModeChoice("edt", f"{ifname} has the fq qdisc: earliest-departure-time pacing")
    fq = kernel_has_fq()
    if fq and kind in DEFAULT_ROOTS:
        return ModeChoice("edt", f"{ifname} had the default qdisc {kind}: fq put on it for the shaper's "
                                 f"time, earliest-departure-time pacing", install_fq=True)
    why = (f"this kernel has no fq qdisc" if not fq else
           f"{ifname}'s root qdisc is {kind}, which the shaper does not replace")
    if requested == "edt":
        raise TraceError(f"earliest-departure-time pacing needs the fq qdisc on {ifname}: {why}",
                         hint="use --mode police (a token-bucket policer), or put fq on the interface "
                              "(tc qdisc replace dev IFACE root fq)")
    return ModeChoice("police", f"no EDT pacing ({why}): token-bucket policer")


# ---- the shaper -----------------------------------------------------------------------------

@dataclass
class Shaper:
    prog: LoadedProgram
    attachment: Optional[TcAttachment]
    choice: ModeChoice
    rate_bps: int
    burst: int
    to: Sequence[R.Network]
    nl: Netlink
    ifindex: int
    started: float = field(default_factory=time.monotonic)
    last: Tuple[float, int] = (0.0, 0)  # (when, shaped bytes) of the last report: the rate since

    @staticmethod
    def start(target: NetTarget, ifname: str, rate_bps: int, burst: Optional[int] = None,
              to: Sequence[R.Network] = (), mode: str = "auto", force: bool = False) -> "Shaper":
        with target.entered():
            ifindex = target.ifindex(ifname)
            nl = Netlink()
        prog = None
        try:
            choice = choose_mode(mode, nl, ifindex, ifname)
            prog = LoadedProgram.load(SOURCE, PROGRAM, "sched_cls")
            sh = Shaper(prog, None, choice, rate_bps, burst or default_burst(rate_bps), list(to), nl, ifindex)
            sh._configure()
            sh._install_fq()
            sh.attachment = TcAttachment.attach(target, ifname, prog.fd, PROGRAM, "egress", force)
        except BaseException:
            if prog is not None:
                _cleanup_fq(nl, ifindex, choice)  # type: ignore[possibly-undefined]
                prog.close()
            nl.close()
            raise
        return sh

    def update(self, rate_bps: int, burst: Optional[int]) -> None:
        self.rate_bps, self.burst = rate_bps, burst or default_burst(rate_bps)
        self._configure()

    def _configure(self) -> None:
        if self.burst < GSO_MAX and self.choice.mode == "police":
            raise RateError(f"burst {self.burst} bytes is below the largest packet the hook may see "
                            f"({GSO_MAX} bytes: a GSO packet), which would never pass")
        ns_per_kib = (1024 * 8 * 10**9) // self.rate_bps
        tolerance = self.burst * 8 * 10**9 // self.rate_bps
        value = CONFIG.pack(ns_per_kib, tolerance, int(self.choice.mode == "edt"), int(not self.to))
        self.prog.map("sh_config").update(struct.pack("=I", 0), value)
        dests = self.prog.map("sh_dests")
        for net in self.to:
            dests.update(dest_key(net), struct.pack("=I", 1))

    def _install_fq(self) -> None:
        if self.choice.install_fq:
            try:
                self.nl.add_qdisc(self.ifindex, "fq", parent=TC_H_ROOT, handle=0, replace=True)
            except NetlinkError as e:
                raise TraceError(f"cannot put the fq qdisc on the interface: {e}") from None

    def counters(self) -> Dict[str, Dict[str, int]]:
        m = self.prog.map("sh_counters")
        out = {}
        for i, name in enumerate(SLOTS):
            value = m.lookup(struct.pack("=I", i)) or b""
            packets = nbytes = 0
            for cpu in m.cpu_slots(value):
                p, b = COUNTER.unpack(cpu[:COUNTER.size])
                packets, nbytes = packets + p, nbytes + b
            out[name] = {"packets": packets, "bytes": nbytes}
        return out

    def report(self, final: bool = False) -> Dict[str, object]:
        a = self.attachment
        c = self.counters()
        now = time.monotonic()
        shaped = c["passed"]["bytes"] + c["delayed"]["bytes"]
        when, before = self.last if self.last[0] else (self.started, 0)
        self.last = (now, shaped)
        return {"interface": a.ifname if a else "", "target": a.target.description if a else "",
                "attach": a.describe() if a else "", "mode": self.choice.mode, "why": self.choice.reason,
                "rate_bps": self.rate_bps, "burst_bytes": self.burst, "to": [str(n) for n in self.to],
                "elapsed": round(now - self.started, 3), "final": final,
                "sent_bps": round((shaped - before) * 8 / max(now - when, 1e-6)), **c}

    def alive(self) -> bool:
        return self.attachment is not None and self.attachment.alive()

    def close(self) -> None:
        if self.attachment is not None:
            self.attachment.detach()
        _cleanup_fq(self.nl, self.ifindex, self.choice)
        self.prog.close()
        self.nl.close()


def default_burst(rate_bps: int) -> int:
    """Enough for TCP to keep the rate through the stalls that follow a drop at the sender (its
    probe timer: 200 ms and more), and for a few full-size GSO packets (measured: tests/net)."""
    return max(DEFAULT_BURST_PACKETS * GSO_MAX, int(rate_bps / 8 * DEFAULT_BURST_TIME))


def _cleanup_fq(nl: Netlink, ifindex: int, choice: ModeChoice) -> None:
    if not choice.install_fq:
        return
    try:
        root = nl.root_qdisc(ifindex)
        if root is not None and root.kind == "fq":
            nl.del_qdisc(ifindex, parent=TC_H_ROOT, handle=0)
    except OSError:
        pass  # the device is gone
