#!/usr/bin/env python3
"""What the XDP firewall and the tc shaper cost per packet, by the kernel's own clock, as ratios to
an empty program of the same hook: BPF_PROG_TEST_RUN with `repeat` runs the loaded program on one
packet many times and says the mean time per run (best of 5).

    sudo .venv/bin/python benchmarks/guard_cost.py [--repeat 1000000]

The packet is a TCP SYN to port 9999 from 192.0.2.1 to 10.0.0.2. For the firewall no rule matches
it, so the program walks every port rule (the worst case) after its source lookup; a row with a
matching first rule shows the best case. Rules are made with guard/rules.py and installed as the
command installs them; the shaper's configuration is written as `shape` writes it. No interface
is touched. The empty programs (XDP_PASS, TC_ACT_UNSPEC) are the floor: the cost of running any
program through the hook on this machine.
"""
from __future__ import annotations

import argparse
import ctypes
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubectl_pytrace.bpf.syscalls import _bpf, _TestRunAttr  # noqa: E402
from kubectl_pytrace.guard import rules as R  # noqa: E402
from kubectl_pytrace.guard import shape as S  # noqa: E402
from kubectl_pytrace.guard.firewall import Firewall, PROGRAM, SOURCE  # noqa: E402
from kubectl_pytrace.guard.program import LoadedProgram  # noqa: E402

BPF_PROG_TEST_RUN = 10
EMPTY_XDP = "#include <uapi/linux/bpf.h>\nint pytrace_empty(struct xdp_md *ctx) { return XDP_PASS; }\n"
EMPTY_TC = ("#include <uapi/linux/bpf.h>\n#include <uapi/linux/pkt_cls.h>\n"
            "int pytrace_empty(struct __sk_buff *skb) { return TC_ACT_UNSPEC; }\n")
VERDICTS = {"xdp": {1: "drop", 2: "pass"}, "sched_cls": {-1: "pass (next)", 0: "ok", 2: "drop"}}


def syn(dport: int) -> bytes:
    eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", 0x0800)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, bytes([192, 0, 2, 1]), bytes([10, 0, 0, 2]))
    tcp = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    return eth + ip + tcp


def test_run(fd: int, packet: bytes, repeat: int) -> tuple:
    """(mean ns per run, the program's return value)"""
    data = ctypes.create_string_buffer(packet, len(packet))
    out = ctypes.create_string_buffer(len(packet) + 256)
    attr = _TestRunAttr(prog_fd=fd, data_size_in=len(packet), data_in=ctypes.addressof(data),
                        data_size_out=len(out), data_out=ctypes.addressof(out), repeat=repeat)
    _bpf(BPF_PROG_TEST_RUN, attr)
    return attr.duration, ctypes.c_int32(attr.retval).value


def measure(prog: LoadedProgram, kind: str, packet: bytes, repeat: int) -> tuple:
    best = min(test_run(prog.fd, packet, repeat)[0] for _ in range(5))
    verdict = test_run(prog.fd, packet, 1)[1]
    return best, VERDICTS[kind].get(verdict, str(verdict))


def firewall_case(rules, packet: bytes, repeat: int) -> tuple:
    prog = LoadedProgram.load(SOURCE, PROGRAM, "xdp")
    try:
        Firewall(prog, None, "drop")._install(rules)  # type: ignore[arg-type]
        return measure(prog, "xdp", packet, repeat)
    finally:
        prog.close()


def shape_case(rate_bps: int, tolerance_ns: int, edt: bool, to, packet: bytes, repeat: int) -> tuple:
    prog = LoadedProgram.load(S.SOURCE, S.PROGRAM, "sched_cls")
    try:
        for net in to:
            prog.map("sh_dests").update(S.dest_key(net), struct.pack("=I", 1))
        ns_per_kib = 1024 * 8 * 10**9 // rate_bps
        prog.map("sh_config").update(struct.pack("=I", 0), S.CONFIG.pack(ns_per_kib, tolerance_ns, int(edt),
                                                                           int(not to)))
        return measure(prog, "sched_cls", packet, repeat)
    finally:
        prog.close()


def empty_case(source: str, kind: str, packet: bytes, repeat: int) -> tuple:
    prog = LoadedProgram.load(source, "pytrace_empty", kind)
    try:
        return measure(prog, kind, packet, repeat)
    finally:
        prog.close()


def table(title: str, floor: tuple, rows) -> None:
    print(f"\n{title}\n{'':58} {'ns/packet':>10} {'ratio':>6}  verdict")
    print(f"{'empty program (the floor)':58} {floor[0]:>10.1f} {1:>6.2f}  {floor[1]}")
    for name, (ns, verdict) in rows:
        print(f"{name:58} {ns:>10.1f} {ns / max(floor[0], 1):>6.2f}  {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.repeat
    port_rules = [R.parse_rule(f"tcp/{1000 + i}") for i in range(R.MAX_RULES)]
    sources = [R.parse_rule(f"from 198.51.{i // 256}.{i % 256}/32") for i in range(R.MAX_SOURCES)]
    miss, hit = syn(9999), syn(1000)
    table("firewall (XDP)", empty_case(EMPTY_XDP, "xdp", miss, n), [
        ("1 port rule, no match", firewall_case(port_rules[:1], miss, n)),
        ("8 port rules, no match", firewall_case(port_rules[:8], miss, n)),
        ("64 port rules, no match (worst case)", firewall_case(port_rules, miss, n)),
        ("64 port rules, the first matches", firewall_case(port_rules, hit, n)),
        ("1024 source networks + 64 port rules, no match", firewall_case(sources + port_rules, miss, n)),
    ])
    to = [R.parse_rule(f"from 10.{i // 256}.{i % 256}.0/24").source for i in range(S.MAX_DESTS)]
    far = [R.parse_rule("from 203.0.113.0/24").source]
    table("shape (tc egress)", empty_case(EMPTY_TC, "sched_cls", miss, n), [
        ("police, 10 Gbit/s, within the burst", shape_case(10**10, 10**15, False, [], miss, n)),
        ("police, 1 kbit/s, over the burst (drops)", shape_case(1000, 1, False, [], miss, n)),
        ("edt, 10 Gbit/s (stamps departure times)", shape_case(10**10, 10**15, True, [], miss, n)),
        ("police, --to 1024 networks, the packet to one of them", shape_case(10**10, 10**15, False, to, miss, n)),
        ("police, --to a network the packet is not to (not shaped)", shape_case(10**10, 10**15, False, far, miss, n)),
    ])


if __name__ == "__main__":
    main()
