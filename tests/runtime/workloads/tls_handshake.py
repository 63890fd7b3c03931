"""tls_handshake.py DIR: one TLS connection between `openssl s_server` and `openssl s_client`
over 127.0.0.1 (an ECDSA certificate made in DIR), a line sent each way with SSL_write and read
with SSL_read (Python's ssl module calls SSL_write_ex/SSL_read_ex instead). Exits 0 when the
reversed line came back. The workload of bpftrace's sslsnoop.bt and ssllatency.bt."""

import socket
import subprocess
import sys
import time
from pathlib import Path


def make_certificate(d: Path):
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=pytrace", "-days", "1"],
                   check=True, capture_output=True)
    return cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(port: int) -> bytes:
    """The reply to one line (stdin stays open until it came: at EOF s_client hangs up)."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-quiet", "-no_ign_eof"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdin.write(b"pytrace\n")
    p.stdin.flush()
    reply = p.stdout.readline()  # b"" when the connection failed
    p.stdin.close()
    p.wait(timeout=30)
    return reply


def main() -> int:
    cert, key = make_certificate(Path(sys.argv[1]))
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert),
                               "-key", str(key), "-naccept", "1", "-rev", "-quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    try:
        while b"ecartyp" not in client(port):  # refused until the server listens
            if time.monotonic() > deadline or server.poll() is not None:
                return 1
            time.sleep(0.05)
    finally:
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
