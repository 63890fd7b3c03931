"""Firewall rules: parsed from the command line, compiled into map entries (never into C).

    RULE := [PROTO[/PORTS]] [from CIDR]          --deny RULE (repeat)
    PROTO := tcp | udp | sctp | icmp | icmpv6 | any | a protocol number (0-255)
    PORTS := PORT | PORT-PORT                     destination port(s): tcp, udp and sctp only
    --deny-from CIDR  is  --deny 'from CIDR'      (any protocol from those sources)

Examples: `tcp/8080`, `udp/53`, `tcp/8000-8099`, `icmp`, `tcp/22 from 10.0.0.0/8`,
`from 192.168.7.0/24`, `from 2001:db8::/32`.

Every rule denies (--mode count only counts). A rule of sources alone goes into an LPM trie
(any number of them, up to MAX_SOURCES, looked up once per packet); the others are an ordered
table of up to MAX_RULES entries the program walks. A packet is counted under the first rule it
matches: source rules first, then the others in the order given.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

from kubectl_pytrace.errors import UserError

MAX_RULES = 64
MAX_SOURCES = 1024
RULE_IDS = MAX_RULES + MAX_SOURCES  # counter slots of one rule set (there are two: see firewall.py)
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58}
PORT_PROTOCOLS = {6, 17, 132}

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class RuleError(UserError):
    """A rule that does not parse or that the program cannot hold."""


@dataclass(frozen=True)
class Rule:
    text: str  # as the user wrote it, normalised: the rule's name in the counters
    proto: Optional[int] = None  # None: any
    ports: Optional[Tuple[int, int]] = None
    source: Optional[Network] = None

    @property
    def source_only(self) -> bool:
        return self.proto is None and self.ports is None and self.source is not None


def _bad(text: str, why: str) -> RuleError:
    return RuleError(f"invalid rule {text!r}: {why}",
                     hint="rules look like tcp/8080, udp/53, tcp/8000-8099, icmp, 'tcp/22 from 10.0.0.0/8' "
                          "or 'from 192.168.0.0/16' (--deny-from CIDR)")


def _proto(text: str, word: str) -> Optional[int]:
    word = word.lower()
    if word == "any":
        return None
    if word in PROTOCOLS:
        return PROTOCOLS[word]
    if word.isdigit() and int(word) <= 255:
        return int(word)
    raise _bad(text, f"unknown protocol {word!r} (tcp, udp, sctp, icmp, icmpv6, any or a number 0-255)")


def _ports(text: str, spec: str, proto: Optional[int]) -> Tuple[int, int]:
    if proto not in PORT_PROTOCOLS:
        raise _bad(text, "ports go with tcp, udp or sctp")
    m = re.match(r"^(\d{1,5})(?:-(\d{1,5}))?$", spec)
    if not m:
        raise _bad(text, f"{spec!r} is not a port or a range of ports (8080, 8000-8099)")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if not 1 <= lo <= hi <= 65535:
        raise _bad(text, f"ports must be 1-65535, the first of a range not above the last ({spec})")
    return lo, hi


def parse_cidr(text: str, rule: Optional[str] = None) -> Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise _bad(rule or text, f"{text!r} is not an address or a network (10.0.0.0/8, 2001:db8::/32)") from None


def _split(text: str) -> Tuple[Optional[str], Optional[str]]:
    """(PROTO[/PORTS] or None, CIDR or None)."""
    words = text.split()
    head, cidr = words, None
    if "from" in [w.lower() for w in words]:
        i = [w.lower() for w in words].index("from")
        if i != len(words) - 2:
            raise _bad(text, "'from' is followed by one address or network, at the end")
        head, cidr = words[:i], words[i + 1]
    if len(head) > 1 or (not head and cidr is None):
        raise _bad(text, "expected PROTO[/PORTS] and/or 'from CIDR'")
    return (head[0] if head else None), cidr


def parse_rule(text: str) -> Rule:
    head, cidr = _split(text)
    proto = ports = None
    if head is not None:
        word, _, port_spec = head.partition("/")
        proto = _proto(text, word)
        ports = _ports(text, port_spec, proto) if port_spec else None
        if head.endswith("/"):
            raise _bad(text, "a '/' must be followed by a port or a range of ports")
    source = parse_cidr(cidr, text) if cidr is not None else None
    return Rule(_normal(proto, ports, source), proto, ports, source)


def _normal(proto: Optional[int], ports: Optional[Tuple[int, int]], source: Optional[Network]) -> str:
    names = {v: k for k, v in PROTOCOLS.items()}
    parts = []
    if proto is not None or ports is not None:
        word = names.get(proto, str(proto)) if proto is not None else "any"
        if ports:
            word += f"/{ports[0]}" if ports[0] == ports[1] else f"/{ports[0]}-{ports[1]}"
        parts.append(word)
    if source is not None:
        parts.append(f"from {source}")
    return " ".join(parts)


def parse_rules(deny: Sequence[str], deny_from: Sequence[str]) -> List[Rule]:
    rules = [parse_rule(t) for t in deny] + [parse_rule(f"from {c}") for c in deny_from]
    seen, out = set(), []
    for r in rules:
        if r.text not in seen:
            seen.add(r.text)
            out.append(r)
    if not out:
        raise RuleError("no rules: give at least one --deny or --deny-from")
    if sum(not r.source_only for r in out) > MAX_RULES:
        raise RuleError(f"too many port/protocol rules ({sum(not r.source_only for r in out)}): at most {MAX_RULES}")
    if sum(r.source_only for r in out) > MAX_SOURCES:
        raise RuleError(f"too many source networks ({sum(r.source_only for r in out)}): at most {MAX_SOURCES}")
    return out


# ---- map entries (the layouts of the structs in firewall.py's C) --------------------------------

RULE_STRUCT = struct.Struct("=IBBHHBx16s16s")  # id, proto, any_proto, port_lo, port_hi, family, addr, mask
SOURCE_KEY = struct.Struct("=IBBxx16s")  # prefixlen, set, family, addr
SOURCE_KEY_FIXED_BITS = 32  # set, family and padding precede the address in the trie's data


def _family(net: Network) -> int:
    return 4 if net.version == 4 else 6


def _addr_bytes(net: Network) -> Tuple[bytes, bytes]:
    addr, mask = net.network_address.packed, net.netmask.packed
    return addr.ljust(16, b"\0"), mask.ljust(16, b"\0")


def rule_entry(rule: Rule, rule_id: int) -> bytes:
    family, addr, mask = 0, bytes(16), bytes(16)
    if rule.source is not None:
        family = _family(rule.source)
        addr, mask = _addr_bytes(rule.source)
    lo, hi = rule.ports or (0, 0xFFFF)  # no ports: every port, and port-less packets (port 0)
    return RULE_STRUCT.pack(rule_id, rule.proto or 0, rule.proto is None, lo, hi, family, addr, mask)


def source_key(net: Network, rule_set: int) -> bytes:
    addr, _ = _addr_bytes(net)
    return SOURCE_KEY.pack(SOURCE_KEY_FIXED_BITS + net.prefixlen, rule_set, _family(net), addr)


@dataclass
class CompiledRules:
    """One rule set as map entries: the table, the trie's keys, and which rule each id is."""

    table: List[bytes]  # fw_rules entries, in order
    sources: List[Tuple[bytes, int]]  # (fw_sources key, rule id)
    names: dict  # rule id -> rule text


def compile_rules(rules: Sequence[Rule], rule_set: int) -> CompiledRules:
    base = rule_set * RULE_IDS
    table, sources, names = [], [], {}
    for r in rules:
        if r.source_only:
            rid = base + MAX_RULES + len(sources)
            sources.append((source_key(r.source, rule_set), rid))  # type: ignore[arg-type]
        else:
            rid = base + len(table)
            table.append(rule_entry(r, rid))
        names[rid] = r.text
    return CompiledRules(table, sources, names)


def to_config(rules: Sequence[Rule]) -> List[str]:
    """Rules as the trace's configuration holds them (their texts; parsed again on the node)."""
    return [r.text for r in rules]


def from_config(texts: Sequence[str]) -> List[Rule]:
    return parse_rules(list(texts), [])
