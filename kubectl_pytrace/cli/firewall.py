"""kubectl pytrace firewall: an XDP firewall on a pod's or a node's interface, or on this host."""

from __future__ import annotations

import click

from kubectl_pytrace.cli.guard import dispatch, target_options

EXAMPLES = """
\b
Examples:
  # drop what comes to port 8080 of a pod, and everything from 10.0.0.0/8; counters every 5 s
  kubectl pytrace firewall pod/web-7d9 --deny tcp/8080 --deny-from 10.0.0.0/8
\b
  # only count (nothing dropped) SSH from outside a network, on a node's eth1, for ten minutes
  kubectl pytrace firewall node/worker-1 -i eth1 --deny 'tcp/22 from 192.168.0.0/16' --mode count --deadline 10m
\b
  # change the rules of the firewall running on that pod (from another terminal)
  kubectl pytrace firewall pod/web-7d9 --update --deny tcp/8080 --deny udp/53
\b
  # this host: a network namespace made with `ip netns add blue`, counters as JSON lines
  kubectl pytrace firewall --local --netns blue -i veth1 --deny icmp -o json
\b
Rules: PROTO[/PORT[-PORT]] [from CIDR], PROTO one of tcp, udp, sctp, icmp, icmpv6, any or a
number; ports are destination ports. XDP sees the packets that arrive on the interface.
"""


@click.command(epilog=EXAMPLES)
@click.option("--deny", multiple=True, metavar="RULE", help="Drop packets that match RULE (repeat).")
@click.option("--deny-from", multiple=True, metavar="CIDR", help="Drop packets from these sources (repeat).")
@click.option("--mode", type=click.Choice(["drop", "count"]), default="drop", show_default=True,
              help="count: match and count, drop nothing.")
@target_options
def firewall(deny, deny_from, mode, **flags) -> None:
    """Attach an XDP firewall to TARGET's interface (pod/NAME, node/NAME, or --local) and print
    per-rule packet and byte counters until Ctrl-C or --deadline; it is detached on exit."""
    from kubectl_pytrace.guard.commands import firewall_settings

    dispatch("firewall", lambda iface: firewall_settings(deny, deny_from, mode, iface, 5.0, False), **flags)
