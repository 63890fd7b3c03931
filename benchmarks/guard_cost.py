#!/usr/bin/env python3
"""What the XDP firewall costs per packet, by the kernel's own clock: BPF_PROG_TEST_RUN with
`repeat` runs the loaded program on one packet many times and says the mean time per run.

    sudo .venv/bin/python benchmarks/firewall_cost.py [--repeat 1000000]

The packet is a TCP SYN to port 9999 from 192.0.2.1, which no rule matches, so the program walks
every port rule (the worst case) after its source lookup; a row with a matching first rule shows
the best case. Rules are made with guard/rules.py as the command makes them. No interface is
touched.
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
from kubectl_pytrace.guard.firewall import Firewall, PROGRAM, SOURCE  # noqa: E402
from kubectl_pytrace.guard.program import LoadedProgram  # noqa: E402


def syn(dport: int) -> bytes:
    eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", 0x0800)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, bytes([192, 0, 2, 1]), bytes([10, 0, 0, 2]))
    tcp = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    return eth + ip + tcp


def ns_per_run(fd: int, packet: bytes, repeat: int) -> float:
    data = ctypes.create_string_buffer(packet, len(packet))
    out = ctypes.create_string_buffer(len(packet) + 256)
    attr = _TestRunAttr(prog_fd=fd, data_size_in=len(packet), data_in=ctypes.addressof(data),
                        data_size_out=len(out), data_out=ctypes.addressof(out), repeat=repeat)
    _bpf(10, attr)
    return attr.duration


def case(rules, packet: bytes, repeat: int) -> tuple:
    prog = LoadedProgram.load(SOURCE, PROGRAM, "xdp")
    try:
        fw = Firewall(prog, None, "drop")  # type: ignore[arg-type]
        fw._install(rules)
        best = min(ns_per_run(prog.fd, packet, repeat) for _ in range(5))
        verdict = _verdict(prog.fd, packet)
    finally:
        prog.close()
    return best, verdict


def _verdict(fd: int, packet: bytes) -> str:
    data = ctypes.create_string_buffer(packet, len(packet))
    out = ctypes.create_string_buffer(len(packet) + 256)
    attr = _TestRunAttr(prog_fd=fd, data_size_in=len(packet), data_in=ctypes.addressof(data),
                        data_size_out=len(out), data_out=ctypes.addressof(out), repeat=1)
    _bpf(10, attr)
    return {1: "drop", 2: "pass"}.get(attr.retval, str(attr.retval))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1_000_000)
    args = ap.parse_args()
    port_rules = [R.parse_rule(f"tcp/{1000 + i}") for i in range(R.MAX_RULES)]
    sources = [R.parse_rule(f"from 198.51.{i // 256}.{i % 256}/32") for i in range(R.MAX_SOURCES)]
    rows = [
        ("1 port rule, no match", port_rules[:1], syn(9999)),
        ("8 port rules, no match", port_rules[:8], syn(9999)),
        ("64 port rules, no match (worst case)", port_rules, syn(9999)),
        ("64 port rules, the first matches", port_rules, syn(1000)),
        ("1024 source networks + 64 port rules, no match", sources + port_rules, syn(9999)),
    ]
    print(f"{'rules':50} {'ns/packet':>10}  verdict")
    for name, rules, packet in rows:
        ns, verdict = case(rules, packet, args.repeat)
        print(f"{name:50} {ns:>10.1f}  {verdict}")


if __name__ == "__main__":
    main()
