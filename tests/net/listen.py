"""Traffic for the firewall tests, run inside network namespaces (ip netns exec).

    python3 listen.py PORT...                      TCP listeners on every address (IPv4 and IPv6);
                                                   prints "listening", accepts and closes forever
    python3 listen.py --connect HOST PORT SECS [SOURCE]   prints connected | refused | timeout
    python3 listen.py --ping HOST                  one ICMP echo (a datagram ICMP socket); exit 0
                                                   when answered within 1.5 s
"""
import os
import select
import socket
import struct
import sys
import time


def listen(ports):
    socks = []
    for port in ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.listen(64)
        socks.append(s)
    print("listening", flush=True)
    while True:
        ready, _, _ = select.select(socks, [], [])
        for s in ready:
            conn, _ = s.accept()
            conn.close()


def connect(host, port, timeout, source=None):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    try:
        s.connect((host, port))
        print("connected")
    except ConnectionRefusedError:
        print("refused")
    except (socket.timeout, TimeoutError):
        print("timeout")


def ping(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(1.5)
    body = struct.pack("!BBHHH", 8, 0, 0, os.getpid() & 0xFFFF, 1) + b"pytrace!"
    csum = sum(struct.unpack(f"!{len(body) // 2}H", body))
    csum = (csum >> 16) + (csum & 0xFFFF)
    csum = ~(csum + (csum >> 16)) & 0xFFFF
    s.sendto(body[:2] + struct.pack("!H", csum) + body[4:], (host, 0))
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        try:
            data, _ = s.recvfrom(2048)
        except (socket.timeout, TimeoutError):
            break
        if data[20] == 0:  # echo reply (after the IPv4 header)
            sys.exit(0)
    sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "--connect":
        connect(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
    elif sys.argv[1] == "--ping":
        ping(sys.argv[2])
    else:
        listen([int(p) for p in sys.argv[1:]])
