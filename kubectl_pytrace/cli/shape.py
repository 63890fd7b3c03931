"""kubectl pytrace shape: an egress rate for a pod's or a node's interface, or on this host."""

from __future__ import annotations

import click

from kubectl_pytrace.cli.guard import dispatch, target_options

EXAMPLES = """
\b
Examples:
  # what a pod sends leaves at 1 Mbit/s at most, until Ctrl-C
  kubectl pytrace shape pod/web-7d9 --egress-rate 1mbit
\b
  # only what goes to 10.1.0.0/16, for five minutes, with a 256 kB burst
  kubectl pytrace shape pod/web-7d9 --egress-rate 20mbit --to 10.1.0.0/16 --burst 256k --deadline 5m
\b
  # this host: the egress of veth1 in network namespace blue
  kubectl pytrace shape --local --netns blue -i veth1 --egress-rate 500kbit
\b
Modes: edt (earliest departure time: packets are held by the fq qdisc until their time) where
the interface has fq or the kernel has it, else police (a token bucket: packets beyond the burst
are dropped). The first lines say which one runs and why.
"""


@click.command(epilog=EXAMPLES)
@click.option("--egress-rate", required=True, metavar="RATE", help="1mbit, 500kbit, 2gbit, 10mbps (bytes).")
@click.option("--burst", metavar="SIZE", help="Bytes that may go at once (default: 250 ms of the rate, at "
              "least 2 x (64 KiB + 1514): TCP needs that much to keep the rate through a drop).")
@click.option("--to", "to", multiple=True, metavar="CIDR", help="Shape only packets to these networks (repeat).")
@click.option("--mode", type=click.Choice(["auto", "police", "edt"]), default="auto", show_default=True)
@target_options
def shape(egress_rate, burst, to, mode, **flags) -> None:
    """Limit what TARGET's interface sends (pod/NAME, node/NAME, or --local) with a tc egress
    program; counters of passed, delayed and dropped packets until Ctrl-C or --deadline."""
    from kubectl_pytrace.guard.commands import shape_settings

    dispatch("shape", lambda iface: shape_settings(egress_rate, burst, to, mode, iface, 5.0, False), **flags)
