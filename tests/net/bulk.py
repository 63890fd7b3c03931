"""A bulk TCP transfer for the shaper's tests, run inside network namespaces (ip netns exec).

    python3 bulk.py serve PORT SECONDS [SKIP]
                                          accepts one connection and reads it for SECONDS after the
                                          first byte; prints {"bytes": N, "bps": R} as JSON, where R
                                          is the rate after the first SKIP seconds (default 1: a
                                          full bucket's burst goes through at once)
    python3 bulk.py send HOST PORT        sends as fast as it can until the receiver goes away

The receiver ends the measurement itself: data still queued in the sender's socket when a shaper is
taken off would otherwise arrive at once and count as shaped.
"""
import json
import socket
import sys
import time

def serve(port: int, seconds: float, skip: float = 1.0) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    print("listening", file=sys.stderr, flush=True)
    conn, _ = srv.accept()
    conn.settimeout(1.0)
    total = steady = 0
    first = None
    while first is None or time.monotonic() - first < seconds:
        try:
            data = conn.recv(1 << 16)
        except socket.timeout:
            continue
        if not data:
            break
        now = time.monotonic()
        first = now if first is None else first
        total += len(data)
        steady += len(data) if now - first >= skip else 0
    conn.close()
    json.dump({"bytes": total, "bps": steady * 8 / (seconds - skip)}, sys.stdout)


def send(host: str, port: int) -> None:
    s = socket.create_connection((host, port), timeout=30)
    chunk = b"x" * (1 << 16)
    try:
        while True:
            s.sendall(chunk)
    except OSError:
        pass


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), float(sys.argv[3]), *(float(a) for a in sys.argv[4:5]))
    else:
        send(sys.argv[2], int(sys.argv[3]))
