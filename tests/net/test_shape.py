"""The tc egress shaper for real: a bulk TCP transfer from namespace a to b, measured by the
receiver, with the shaper on a's end (va) and without it. Rates are compared with the configured
one (within 15 %), and with the unshaped rate before and after (which must be far above it).
"""
from __future__ import annotations

import ctypes
import signal
import struct

import pytest

from kubectl_pytrace.guard import shape
from netlab import leftovers, links, progs, qdiscs, run_cli, tc_filters

pytestmark = [pytest.mark.root, pytest.mark.bpf]
TOLERANCE = 0.15
# seconds measured: a token bucket lets a flow that fell behind (TCP stalls after a drop) catch up
# by up to the burst, so the window must be long against burst / rate (1.07 s at 1 Mbit/s)
MEASURE = {1e6: 8.0, 10e6: 4.0}


def start(guard, lab, *args: str, env=None):
    g = guard("shape", "--netns", lab.a.name, "-i", lab.a.dev, "--interval", "1s", "-o", "json", *args, env=env)
    return g, g.wait_attached()


def fq_available() -> bool:
    from kubectl_pytrace.guard.shape import kernel_has_fq

    return kernel_has_fq()


@pytest.mark.parametrize("rate, bps", [("1mbit", 1e6), ("10mbit", 10e6)])
def test_a_bulk_transfer_runs_at_the_rate_and_returns_to_normal_after(lab, guard, rate, bps):
    before = lab.bulk_bps(lab.b.addr, 2.0)
    g, line = start(guard, lab, "--egress-rate", rate)
    ids = progs("pytrace_shape")
    assert links(ids), "the shaper holds no BPF link"
    burst = g.reports()[0]["burst_bytes"] if g.reports() else shape.default_burst(int(bps))
    skip = max(1.0, burst * 8 / bps)  # the full bucket's burst goes first: measure after it
    shaped = lab.bulk_bps(lab.b.addr, skip + MEASURE[bps], skip=skip)
    assert g.stop() == 0
    after = lab.bulk_bps(lab.b.addr, 2.0)
    print(f"{rate}: unshaped {before / 1e6:.0f} Mbit/s, shaped {shaped / 1e6:.3f} Mbit/s "
          f"({shaped / bps:.3f} of the rate), after {after / 1e6:.0f} Mbit/s; {line}")
    assert abs(shaped - bps) <= TOLERANCE * bps, f"{shaped:.0f} bit/s is not within 15% of {bps:.0f}"
    assert before > 10 * bps and after > 10 * bps, (before, after)
    final = g.final()
    mode = "edt" if fq_available() else "police"
    assert final["mode"] == mode
    assert final["passed"]["bytes"] + final["delayed"]["bytes"] > shaped / 8 * MEASURE[bps]
    assert final["burst_bytes"] == burst
    if mode == "police":
        assert final["dropped"]["packets"] > 0 and final["delayed"]["packets"] == 0
    assert not leftovers(lab.a, ids), leftovers(lab.a, ids)


def test_only_the_to_networks_are_shaped(lab, guard):
    other = lab.add_address("b")
    g, _ = start(guard, lab, "--egress-rate", "2mbit", "--to", f"{lab.b.addr}/32")
    shaped = lab.bulk_bps(lab.b.addr, 3.0)
    free = lab.bulk_bps(other, 2.0)
    assert g.stop() == 0
    assert shaped < 2e6 * (1 + TOLERANCE) and free > 20e6, (shaped, free)
    final = g.final()
    assert final["other"]["bytes"] > free / 8  # what went to the other address, counted and passed


def test_the_mode_is_said_and_edt_needs_fq(lab, guard):
    g, line = start(guard, lab, "--egress-rate", "1mbit", "--deadline", "1s")
    assert g.p.wait(timeout=30) == 0
    if fq_available():
        assert "earliest-departure-time pacing" in line
        return
    assert "no EDT pacing (this kernel has no fq qdisc): token-bucket policer" in line
    p = run_cli("shape", "--local", "--netns", lab.a.name, "-i", lab.a.dev, "--egress-rate", "1mbit", "--mode", "edt")
    assert p.returncode == 1
    assert "earliest-departure-time pacing needs the fq qdisc on va: this kernel has no fq qdisc" in p.stderr


def test_clsact_where_there_is_no_tcx(lab, guard):
    """The way for kernels before 6.6: a clsact qdisc and a cls_bpf filter (PYTRACE_ATTACH=netlink
    takes it here); tc shows the filter while it runs, and nothing after."""
    g, line = start(guard, lab, "--egress-rate", "2mbit", env={"PYTRACE_ATTACH": "netlink"})
    assert "clsact qdisc + cls_bpf filter" in line
    filters = tc_filters(lab.a)
    assert [f["options"]["bpf_name"].split(":")[0] for f in filters if "options" in f] == ["pytrace_shape"]
    assert "clsact" in qdiscs(lab.a)
    # 5 s after the first: a flow that fell behind (a loaded machine) may catch up by one burst
    # (2 GSO frames, 134 kB), which over 2 s read 1.18 of the rate once; over 5 s it is at most 1.11
    shaped = lab.bulk_bps(lab.b.addr, 6.0)
    assert shaped < 2e6 * (1 + TOLERANCE), shaped
    ids = progs("pytrace_shape")
    assert g.stop(signal.SIGTERM) == 0
    assert not leftovers(lab.a, ids) and "clsact" not in qdiscs(lab.a)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_nothing_stays_attached(lab, guard, how):
    g, _ = start(guard, lab, "--egress-rate", "1mbit")
    ids = progs("pytrace_shape")
    assert links(ids)
    g.stop(how)
    assert not leftovers(lab.a, ids), leftovers(lab.a, ids)


def test_a_rate_change_while_running(lab, guard):
    g, _ = start(guard, lab, "--egress-rate", "1mbit")
    upd = run_cli("shape", "--local", "--netns", lab.a.name, "-i", lab.a.dev, "--update", "--egress-rate", "5mbit")
    assert upd.returncode == 0, upd.stderr
    shaped = lab.bulk_bps(lab.b.addr, 4.0)
    assert g.stop() == 0
    assert abs(shaped - 5e6) <= TOLERANCE * 5e6, shaped


@pytest.mark.parametrize("args, message", [
    (["--egress-rate", "fast"], "invalid rate 'fast'"),
    (["--egress-rate", "1mbit", "--to", "10.0.0.300/8"], "is not an address or a network"),
    (["--egress-rate", "1mbit", "--burst", "1000"], "burst 1000 bytes is below the largest packet"),
    (["--egress-rate", "1mbit", "-i", "nosuch0"], "no interface 'nosuch0'"),
])
def test_errors_are_clear_and_exit_1(lab, args, message):
    before = progs("pytrace_shape")
    argv = ["shape", "--local", "--netns", lab.a.name] + (["-i", lab.a.dev] if "-i" not in args else []) + args
    p = run_cli(*argv)
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith("error: ") and message in p.stderr, p.stderr
    assert progs("pytrace_shape") == before and not tc_filters(lab.a)


# ---- the EDT branch without fq: the program run by BPF_PROG_TEST_RUN ---------------------------

class _SkBuff(ctypes.Structure):  # struct __sk_buff, up to tstamp (and room after)
    _fields_ = [("len", ctypes.c_uint32), ("pkt_type", ctypes.c_uint32), ("mark", ctypes.c_uint32),
                ("queue_mapping", ctypes.c_uint32), ("protocol", ctypes.c_uint32), ("vlan_present", ctypes.c_uint32),
                ("vlan_tci", ctypes.c_uint32), ("vlan_proto", ctypes.c_uint32), ("priority", ctypes.c_uint32),
                ("ingress_ifindex", ctypes.c_uint32), ("ifindex", ctypes.c_uint32), ("tc_index", ctypes.c_uint32),
                ("cb", ctypes.c_uint32 * 5), ("hash", ctypes.c_uint32), ("tc_classid", ctypes.c_uint32),
                ("data", ctypes.c_uint32), ("data_end", ctypes.c_uint32), ("napi_id", ctypes.c_uint32),
                ("family", ctypes.c_uint32), ("remote_ip4", ctypes.c_uint32), ("local_ip4", ctypes.c_uint32),
                ("remote_ip6", ctypes.c_uint32 * 4), ("local_ip6", ctypes.c_uint32 * 4),
                ("remote_port", ctypes.c_uint32), ("local_port", ctypes.c_uint32), ("data_meta", ctypes.c_uint32),
                ("flow_keys", ctypes.c_uint64), ("tstamp", ctypes.c_uint64), ("wire_len", ctypes.c_uint32),
                ("gso_segs", ctypes.c_uint32), ("sk", ctypes.c_uint64), ("gso_size", ctypes.c_uint32),
                ("tstamp_type", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 3), ("hwtstamp", ctypes.c_uint64)]


def _test_run(prog_fd: int, packet: bytes, tstamp: int = 0):
    from kubectl_pytrace.bpf.syscalls import _bpf, _TestRunAttr

    data = ctypes.create_string_buffer(packet, len(packet))
    ctx_in, ctx_out = _SkBuff(tstamp=tstamp), _SkBuff()
    attr = _TestRunAttr(prog_fd=prog_fd, data_size_in=len(packet), data_in=ctypes.addressof(data),
                        ctx_size_in=ctypes.sizeof(ctx_in), ctx_in=ctypes.addressof(ctx_in),
                        ctx_size_out=ctypes.sizeof(ctx_out), ctx_out=ctypes.addressof(ctx_out), repeat=1)
    _bpf(10, attr)
    return ctypes.c_int32(attr.retval).value, ctx_out.tstamp


def test_edt_stamps_departure_times_at_the_rate():
    """What fq would hold: with EDT on, back-to-back packets get departure times one packet's
    cost apart (at 8 Mbit/s, 1000 bytes = 1 ms), none is dropped until the horizon."""
    from kubectl_pytrace.guard.program import LoadedProgram
    from kubectl_pytrace.guard.shape import CONFIG, PROGRAM, SOURCE

    prog = LoadedProgram.load(SOURCE, PROGRAM, "sched_cls")
    try:
        ns_per_kib = 1024 * 8 * 10**9 // 8_000_000
        prog.map("sh_config").update(struct.pack("=I", 0), CONFIG.pack(ns_per_kib, 10**9, 1, 1))
        packet = bytes(14) + bytes(986)  # 1000 bytes (not IP: shaped, as --to is not given)
        stamps = [_test_run(prog.fd, packet)[1] for _ in range(5)]
        verdicts = {_test_run(prog.fd, packet)[0] for _ in range(3)}
    finally:
        prog.close()
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert all(abs(g - 1_000_000) < 50_000 for g in gaps[1:]), gaps
    assert verdicts == {-1}  # TC_ACT_UNSPEC: on to the next program / the qdisc
