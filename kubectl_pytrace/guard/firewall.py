"""The XDP firewall: one program per interface, its rules in maps, its counters per rule.

    fw = Firewall.start(target, "eth0", rules, mode="drop", force=False)
    fw.counters() -> {"rules": [{"rule", "packets", "bytes"}], "passed": {...}, "non_ip": {...}}
    fw.update(new_rules)        # while running: the other rule set is written, then made current
    fw.close()                  # detaches (closing the BPF link) and frees the maps

The program is fixed C (no user text in it): the rules are map entries (rules.py). There are two
rule sets; the config map says which one the program uses, so an update writes the unused set and
switches with one map write: a packet sees the old rules or the new ones, never a mix. Counters are
per-CPU (no atomics on the fast path), per rule id; rule ids of the two sets do not overlap, so an
update carries each kept rule's counts over by its text.

What the program sees: frames entering the interface (XDP is receive-only), Ethernet with at
most one VLAN tag, IPv4 (any header length) and IPv6 (the first header only: a port rule does not
match a packet whose TCP header follows extension headers, nor a non-first IPv4 fragment; source
rules do). Ports are destination ports.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from kubectl_pytrace.bpf.syscalls import RawMap
from kubectl_pytrace.guard import rules as R
from kubectl_pytrace.guard.attach import XdpAttachment
from kubectl_pytrace.guard.netns import NetTarget
from kubectl_pytrace.guard.program import LoadedProgram

PROGRAM = "pytrace_fw"
PASSED = 2 * R.RULE_IDS
NON_IP = PASSED + 1
MODES = ("drop", "count")

SOURCE = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>

#define MAX_RULES %(max_rules)d
#define MAX_SOURCES %(max_sources)d
#define RULE_IDS (MAX_RULES + MAX_SOURCES)
#define PASSED (2 * RULE_IDS)
#define NON_IP (PASSED + 1)
#define NO_MATCH 0xffffffff
#define BE16(x) ((u16)__builtin_bswap16(x))

struct fw_config { u32 set; u32 nrules[2]; u32 count_only; };
struct fw_rule { u32 id; u8 proto; u8 any_proto; u16 port_lo; u16 port_hi; u8 family; u8 pad;
                 u32 addr[4]; u32 mask[4]; };
struct fw_src_key { u32 prefixlen; u8 set; u8 family; u16 pad; u32 addr[4]; };
struct fw_counter { u64 packets; u64 bytes; };
struct fw_pkt { u32 saddr[4]; u16 dport; u8 family; u8 proto; };

BPF_ARRAY(fw_config, struct fw_config, 1);
BPF_ARRAY(fw_rules, struct fw_rule, 2 * MAX_RULES);
BPF_LPM_TRIE(fw_sources, struct fw_src_key, u32, 2 * MAX_SOURCES);
BPF_PERCPU_ARRAY(fw_counters, struct fw_counter, 2 * RULE_IDS + 2);

static __always_inline int fw_l4(void *l4, void *end, struct fw_pkt *p) {
    if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP && p->proto != IPPROTO_SCTP)
        return 0;
    u16 *ports = l4;
    if ((void *)(ports + 2) > end)
        return 0;
    p->dport = BE16(ports[1]);
    return 0;
}

static __always_inline int fw_parse(void *data, void *end, struct fw_pkt *p) {
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return -1;
    u16 type = eth->h_proto;
    void *l3 = eth + 1;
    if (type == BE16(ETH_P_8021Q) || type == BE16(ETH_P_8021AD)) {
        u16 *vlan = l3;
        if ((void *)(vlan + 2) > end)
            return -1;
        type = vlan[1];
        l3 = vlan + 2;
    }
    if (type == BE16(ETH_P_IP)) {
        struct iphdr *ip = l3;
        if ((void *)(ip + 1) > end)
            return -1;
        p->family = 4;
        p->proto = ip->protocol;
        p->saddr[0] = ip->saddr;
        if (ip->frag_off & BE16(0x1fff))
            return 0;
        return fw_l4((void *)ip + ip->ihl * 4, end, p);
    }
    if (type == BE16(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > end)
            return -1;
        p->family = 6;
        p->proto = ip6->nexthdr;
        __builtin_memcpy(p->saddr, &ip6->saddr, 16);
        return fw_l4(ip6 + 1, end, p);
    }
    return -1;
}

/* 0 when the rule matches: no branches, so that the verifier walks the rule loop in one path
   (a port-less packet has dport 0, which no port range holds: ranges start at 1) */
static __always_inline u64 fw_rule_misses(struct fw_rule *r, struct fw_pkt *p) {
    u64 miss = (u64)(r->proto ^ p->proto) * (1 - r->any_proto);
    miss |= (u64)((s64)(r->port_hi - r->port_lo) - (s64)(p->dport - r->port_lo)) >> 63;
    miss |= (u64)((s64)p->dport - (s64)r->port_lo) >> 63;
    u64 in_family = r->family ? 1 : 0;
    miss |= (u64)(r->family ^ p->family) * in_family;
    miss |= (p->saddr[0] & r->mask[0]) ^ r->addr[0];
    miss |= (p->saddr[1] & r->mask[1]) ^ r->addr[1];
    miss |= (p->saddr[2] & r->mask[2]) ^ r->addr[2];
    miss |= (p->saddr[3] & r->mask[3]) ^ r->addr[3];
    return miss;
}

static __always_inline u32 fw_match(struct fw_config *cfg, struct fw_pkt *p) {
    u32 set = cfg->set & 1;
    struct fw_src_key key = {.prefixlen = 32 + 128, .set = set, .family = p->family};
    __builtin_memcpy(key.addr, p->saddr, 16);
    u32 *source_rule = fw_sources.lookup(&key);
    if (source_rule)
        return *source_rule;
    u32 n = cfg->nrules[set], index;
    struct fw_rule *r;
%(rule_steps)s    return NO_MATCH;
}

int pytrace_fw(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    u32 zero = 0;
    struct fw_config *cfg = fw_config.lookup(&zero);
    if (!cfg)
        return XDP_PASS;
    struct fw_pkt p = {};
    u32 slot = NON_IP, rule = NO_MATCH;
    if (fw_parse(data, end, &p) == 0) {
        rule = fw_match(cfg, &p);
        slot = rule == NO_MATCH ? PASSED : rule;
    }
    struct fw_counter *c = fw_counters.lookup(&slot);
    if (c) {
        c->packets += 1;
        c->bytes += end - data;
    }
    return rule != NO_MATCH && !cfg->count_only ? XDP_DROP : XDP_PASS;
}
"""

# the rule table's walk, written out: clang does not unroll a loop with these exits, and the
# verifier cannot bound it (a loop would also need kernel 5.3)
RULE_STEP = """    if (n <= %(i)d)
        return NO_MATCH;
    index = set * MAX_RULES + %(i)d;
    r = fw_rules.lookup(&index);
    if (!r)
        return NO_MATCH;
    if (!fw_rule_misses(r, p))
        return r->id;
"""
SOURCE = SOURCE % {"max_rules": R.MAX_RULES, "max_sources": R.MAX_SOURCES,
                   "rule_steps": "".join(RULE_STEP % {"i": i} for i in range(R.MAX_RULES))}

CONFIG = struct.Struct("=IIII")  # set, nrules[0], nrules[1], count_only
COUNTER = struct.Struct("=QQ")


@dataclass
class _Totals:
    packets: int = 0
    bytes: int = 0

    def add(self, packets: int, nbytes: int) -> None:
        self.packets += packets
        self.bytes += nbytes

    def to_dict(self) -> Dict[str, int]:
        return {"packets": self.packets, "bytes": self.bytes}


@dataclass
class Firewall:
    prog: LoadedProgram
    attachment: XdpAttachment
    mode: str
    rules: List[R.Rule] = field(default_factory=list)
    rule_set: int = 0
    compiled: Optional[R.CompiledRules] = None
    carried: Dict[str, _Totals] = field(default_factory=dict)  # counts of rules before an update
    started: float = field(default_factory=time.monotonic)

    @staticmethod
    def start(target: NetTarget, ifname: str, rules: Sequence[R.Rule], mode: str = "drop",
              force: bool = False) -> "Firewall":
        prog = LoadedProgram.load(SOURCE, PROGRAM, "xdp")
        try:
            fw = Firewall(prog, None, mode)  # type: ignore[arg-type]
            fw._install(list(rules))
            fw.attachment = XdpAttachment.attach(target, ifname, prog.fd, force)
        except BaseException:
            prog.close()
            raise
        return fw

    # ---- maps --------------------------------------------------------------------------------
    def _map(self, name: str) -> RawMap:
        return self.prog.map(name)

    def _write_config(self, rule_set: int, nrules: Dict[int, int]) -> None:
        value = CONFIG.pack(rule_set, nrules[0], nrules[1], int(self.mode == "count"))
        self._map("fw_config").update(struct.pack("=I", 0), value)

    def _install(self, rules: List[R.Rule]) -> None:
        """Writes the rule set not in use and makes it current; then clears the old one."""
        new_set = 1 - self.rule_set if self.compiled is not None else 0
        compiled = R.compile_rules(rules, new_set)
        table, sources, counters = self._map("fw_rules"), self._map("fw_sources"), self._map("fw_counters")
        for i, entry in enumerate(compiled.table):
            table.update(struct.pack("=I", new_set * R.MAX_RULES + i), entry)
        for key, rid in compiled.sources:
            sources.update(key, struct.pack("=I", rid))
        for rid in compiled.names:
            counters.update(struct.pack("=I", rid), bytes(counters.total_value))
        old = self.compiled
        self._write_config(new_set, {new_set: len(compiled.table), 1 - new_set: 0})
        self._carry_over()  # the old set's counts, now that no packet uses it
        self.rules, self.rule_set, self.compiled = rules, new_set, compiled
        if old is not None:
            for key, _ in old.sources:
                sources.delete(key)

    def _carry_over(self) -> None:
        if self.compiled is None:
            return
        for rid, text in self.compiled.names.items():
            packets, nbytes = self._count(rid)
            self.carried.setdefault(text, _Totals()).add(packets, nbytes)

    def update(self, rules: Sequence[R.Rule]) -> None:
        self._install(list(rules))

    # ---- counters ----------------------------------------------------------------------------
    def _count(self, slot: int) -> tuple:
        counters = self._map("fw_counters")
        value = counters.lookup(struct.pack("=I", slot)) or b""
        packets = nbytes = 0
        for cpu in counters.cpu_slots(value):
            p, b = COUNTER.unpack(cpu[:COUNTER.size])
            packets, nbytes = packets + p, nbytes + b
        return packets, nbytes

    def counters(self) -> Dict[str, object]:
        assert self.compiled is not None
        rows = []
        for rid, text in sorted(self.compiled.names.items()):
            t = _Totals(*self._count(rid))
            prev = self.carried.get(text)
            if prev:
                t.add(prev.packets, prev.bytes)
            rows.append({"rule": text, **t.to_dict()})
        return {"rules": rows, "passed": _Totals(*self._count(PASSED)).to_dict(),
                "non_ip": _Totals(*self._count(NON_IP)).to_dict()}

    def report(self, final: bool = False) -> Dict[str, object]:
        a = self.attachment
        return {"interface": a.ifname, "target": a.target.description, "attach": a.describe(),
                "replaced": a.removed or None, "mode": self.mode, "elapsed": round(time.monotonic() - self.started, 3), "final": final,
                **self.counters()}

    def alive(self) -> bool:
        return self.attachment.alive()

    def close(self) -> None:
        if self.attachment is not None:
            self.attachment.detach()
        self.prog.close()
