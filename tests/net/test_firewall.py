"""The XDP firewall for real: two network namespaces joined by a veth pair, the firewall on b's end
(vb), connections and pings from a. A denied packet gets no answer at all (the client times out),
other traffic is answered, every drop is counted under its rule, and after the command ends the
interface has no XDP program and the program is gone from the kernel.
"""
from __future__ import annotations

import signal

import pytest

from netlab import leftovers, progs, run_cli, xdp_prog

pytestmark = [pytest.mark.root, pytest.mark.bpf]


def start(guard, lab, *args: str, env=None):
    g = guard("firewall", "--netns", lab.b.name, "-i", lab.b.dev, "--interval", "1s", "-o", "json", *args, env=env)
    g.wait_attached()
    return g


def rule_counts(report: dict) -> dict:
    return {r["rule"]: r["packets"] for r in report["rules"]}


def test_a_denied_port_gets_no_answer_and_is_counted(lab, guard):
    servers = lab.servers([8080, 8081])
    try:
        assert lab.connect(lab.b.addr, 8080) == "connected"  # before: both answer
        g = start(guard, lab, "--deny", "tcp/8080")
        ids = progs("pytrace_fw")
        assert xdp_prog(lab.b) in ids
        assert lab.connect(lab.b.addr, 8080, timeout=2.5) == "timeout"
        assert lab.connect(lab.b.addr, 8081) == "connected"
        assert lab.connect(lab.b.addr6, 8081) == "connected"
        assert lab.ping(lab.b.addr)
        assert g.stop() == 0
    finally:
        servers.kill()
    final = g.final()
    # the SYN and its retransmissions within 2.5 s (1 s, then 2 s later: at least two)
    assert rule_counts(final)["tcp/8080"] >= 2
    assert final["passed"]["packets"] >= 4  # the SYNs to 8081, the ACKs, the ping
    assert final["mode"] == "drop" and "BPF link" in final["attach"]
    assert not leftovers(lab.b, ids), leftovers(lab.b, ids)
    assert lab.connect(lab.b.addr, 8080) == "refused"  # the server is gone, the firewall too


def test_sources_icmp_and_ipv6_rules(lab, guard):
    other = lab.add_address("a")
    servers = lab.servers([9000])
    try:
        g = start(guard, lab, "--deny-from", f"{other}/32", "--deny", "icmp",
                  "--deny", f"tcp/9000 from {lab.a.addr6.rsplit(':', 1)[0]}:0/112")
        assert lab.connect(lab.b.addr, 9000, source=other) == "timeout"
        assert lab.connect(lab.b.addr, 9000) == "connected"
        assert lab.connect(lab.b.addr6, 9000, timeout=2.5) == "timeout"
        assert not lab.ping(lab.b.addr)
        assert g.stop() == 0
    finally:
        servers.kill()
    counts = rule_counts(g.final())
    assert counts[f"from {other}/32"] >= 1
    assert counts["icmp"] >= 1
    assert sum(n for rule, n in counts.items() if rule.startswith("tcp/9000 from fd00:")) >= 2


def test_count_mode_drops_nothing_but_counts(lab, guard):
    servers = lab.servers([8080])
    try:
        g = start(guard, lab, "--deny", "tcp/8080", "--mode", "count")
        for _ in range(3):
            assert lab.connect(lab.b.addr, 8080) == "connected"
        assert g.stop() == 0
    finally:
        servers.kill()
    # each connection: SYN, ACK, FIN/ACK... at least two packets to port 8080 each
    assert rule_counts(g.final())["tcp/8080"] >= 6


def test_rules_change_while_running(lab, guard):
    servers = lab.servers([8080, 8081])
    try:
        g = start(guard, lab, "--deny", "tcp/8080")
        assert lab.connect(lab.b.addr, 8080) == "timeout"
        upd = run_cli("firewall", "--local", "--netns", lab.b.name, "-i", lab.b.dev, "--update",
                      "--deny", "tcp/8081", "--deny", "tcp/8080")
        assert upd.returncode == 0, upd.stderr
        assert "updated (generation 2)" in upd.stderr
        assert lab.connect(lab.b.addr, 8081) == "timeout"
        upd = run_cli("firewall", "--local", "--netns", lab.b.name, "-i", lab.b.dev, "--update", "--deny", "tcp/8081")
        assert upd.returncode == 0, upd.stderr
        assert lab.connect(lab.b.addr, 8080) == "connected"
        assert lab.connect(lab.b.addr, 8081) == "timeout"
        assert g.stop() == 0
    finally:
        servers.kill()
    assert "firewall rules updated (generation 3): tcp/8081" in g.stderr
    counts = rule_counts(g.final())
    assert list(counts) == ["tcp/8081"]
    assert counts["tcp/8081"] >= 2  # kept across the updates: one timeout before the last, one after


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_nothing_stays_attached(lab, guard, how):
    g = start(guard, lab, "--deny", "tcp/1")
    ids = progs("pytrace_fw")
    assert xdp_prog(lab.b) in ids
    code = g.stop(how)
    assert code == (-signal.SIGKILL if how == signal.SIGKILL else 0)
    assert not leftovers(lab.b, ids), leftovers(lab.b, ids)


def test_the_leftover_check_finds_a_program_left_attached(lab, guard):
    """Attached through netlink (no link: what kernels before 5.9 get), a SIGKILL leaves the
    program on the interface, and the check must say so."""
    g = start(guard, lab, "--deny", "tcp/1", env={"PYTRACE_ATTACH": "netlink"})
    assert "netlink, not a link" in g.wait_attached()
    ids = progs("pytrace_fw")
    g.stop(signal.SIGKILL)
    left = leftovers(lab.b, ids)
    assert left and left.xdp in ids
    assert [x["id"] for x in left.bpftool_net] == [left.xdp]
    # the next run refuses the interface, then --force takes the leftover off
    busy = run_cli("firewall", "--local", "--netns", lab.b.name, "-i", lab.b.dev, "--deny", "tcp/1", "--deadline", "1s")
    assert busy.returncode == 1
    assert "already has an XDP program" in busy.stderr and "pytrace_fw" in busy.stderr
    forced = run_cli("firewall", "--local", "--netns", lab.b.name, "-i", lab.b.dev, "--deny", "tcp/1",
                     "--deadline", "1s", "--force")
    assert forced.returncode == 0, forced.stderr
    assert xdp_prog(lab.b) is None


def test_netlink_attach_detaches_on_a_clean_exit(lab, guard):
    g = start(guard, lab, "--deny", "tcp/1", env={"PYTRACE_ATTACH": "netlink"})
    ids = progs("pytrace_fw")
    assert g.stop(signal.SIGTERM) == 0
    assert not leftovers(lab.b, ids), leftovers(lab.b, ids)


def test_an_interface_with_an_xdp_program_is_refused_unless_forced(lab, guard):
    first = start(guard, lab, "--deny", "tcp/1")
    second = run_cli("firewall", "--local", "--netns", lab.b.name, "-i", lab.b.dev, "--deny", "tcp/2",
                     "--deadline", "1s")
    assert second.returncode == 1
    assert f"interface {lab.b.dev} in the network namespace {lab.b.name} already has an XDP program" in second.stderr
    assert "--force" in second.stderr
    assert first.p.poll() is None  # untouched
    forced = start(guard, lab, "--deny", "tcp/2", "--force", "--deadline", "2s")
    assert "--force took" in forced.stderr or "replaced" in forced.stderr
    first.stop()
    assert forced.p.wait(timeout=30) == 0


@pytest.mark.parametrize("args, message", [
    (["-i", "nosuch0", "--deny", "tcp/80"], "no interface 'nosuch0' in the network namespace"),
    (["-i", "vb", "--deny", "tcp/99999"], "invalid rule 'tcp/99999': ports must be 1-65535"),
    (["-i", "vb", "--deny", "tcp/80 from 10.0.0.0/33"], "is not an address or a network"),
    (["-i", "vb", "--deny", "icmp/7"], "ports go with tcp, udp or sctp"),
    (["-i", "vb"], "no rules: give at least one --deny or --deny-from"),
])
def test_errors_are_clear_and_exit_1(lab, args, message):
    ids = progs("pytrace_fw")
    p = run_cli("firewall", "--local", "--netns", lab.b.name, *args)
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith("error: ") and message in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert progs("pytrace_fw") == ids and xdp_prog(lab.b) is None


def test_a_missing_namespace_and_an_update_of_nothing():
    p = run_cli("firewall", "--local", "--netns", "pytrace-no-such-ns", "--deny", "tcp/80")
    assert p.returncode == 1 and "no network namespace 'pytrace-no-such-ns'" in p.stderr
    p = run_cli("firewall", "--local", "-i", "pytrace-nosuch", "--deny", "tcp/80")
    assert p.returncode == 1 and "no interface 'pytrace-nosuch' in this host's network namespace" in p.stderr
    p = run_cli("firewall", "--local", "-i", "lo", "--update", "--deny", "tcp/80")
    assert p.returncode == 1 and "no firewall on interface lo" in p.stderr
