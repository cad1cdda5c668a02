"""Run a command where every name lookup and connection attempt is seen, and none can leave.

    unshare [--user --map-root-user] --net --mount python netwatch.py REPORT.json -- COMMAND ARGS...

Inside the new (empty) network namespace this script brings up loopback, bind-mounts a
resolv.conf that points at 127.0.0.1 and an nsswitch.conf with `hosts: files dns` (so glibc asks
our server, never a host daemon such as systemd-resolved through a socket outside the namespace),
and serves:
- a fake DNS server on 127.0.0.1:53 (UDP and TCP) that logs every query name and answers A
  127.0.0.1 (AAAA: no records), so a program that resolved a name goes on to connect;
- TCP listeners on 127.0.0.1:80 and :443 that log every connection.
The command runs under `strace -f -e trace=connect` when strace is installed, which records every
connect() to an IPv4/IPv6 address, also to addresses no listener can see (no route out: they fail).
The report: {"dns": [names], "tcp": [ports], "connects": [strace lines], "returncode", "strace"}.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading

LOG: dict = {"dns": [], "tcp": []}
LOCK = threading.Lock()


def query_name(packet: bytes) -> tuple[str, int, int]:
    """(name, qtype, end offset of the question) of a DNS query packet."""
    pos, labels = 12, []
    while pos < len(packet) and packet[pos]:
        n = packet[pos]
        labels.append(packet[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    qtype = struct.unpack(">H", packet[pos + 1:pos + 3])[0] if pos + 3 <= len(packet) else 0
    return ".".join(labels), qtype, pos + 5


def answer(packet: bytes) -> bytes:
    name, qtype, end = query_name(packet)
    with LOCK:
        LOG["dns"].append(name)
    header = packet[:2] + struct.pack(">HHHHH", 0x8180, 1, 1 if qtype == 1 else 0, 0, 0)
    body = packet[12:end]
    if qtype == 1:  # A 127.0.0.1, TTL 60
        body += struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
    return header + body


def serve_udp(sock: socket.socket) -> None:
    while True:
        data, addr = sock.recvfrom(4096)
        if len(data) > 12:
            sock.sendto(answer(data), addr)


def serve_tcp(sock: socket.socket, port: int) -> None:
    while True:
        conn, _ = sock.accept()
        with LOCK:
            LOG["tcp"].append(port)
        if port == 53:  # DNS over TCP: 2-byte length prefix
            try:
                size = struct.unpack(">H", conn.recv(2))[0]
                reply = answer(conn.recv(size))
                conn.sendall(struct.pack(">H", len(reply)) + reply)
            except (OSError, struct.error):
                pass
        conn.close()


def start_servers() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 53))
    threading.Thread(target=serve_udp, args=(udp,), daemon=True).start()
    for port in (53, 80, 443):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("127.0.0.1", port))
        tcp.listen(16)
        threading.Thread(target=serve_tcp, args=(tcp, port), daemon=True).start()


def isolate_resolver(folder: str) -> None:
    """Private mounts; resolv.conf -> 127.0.0.1, nsswitch hosts -> files dns."""
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    for name, text in (("resolv.conf", "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n"),
                       ("nsswitch.conf", "hosts: files dns\n")):
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write(text)
        target = f"/etc/{name}"
        if os.path.islink(target):  # bind-mount needs a real file where resolv.conf is a symlink
            target = os.path.realpath(target)
        if os.path.exists(target):
            subprocess.run(["mount", "--bind", path, target], check=True)


def main() -> int:
    report_path, sep, *command = sys.argv[1:]
    assert sep == "--" and command, __doc__
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    folder = tempfile.mkdtemp(prefix="netwatch-")
    isolate_resolver(folder)
    start_servers()
    strace = shutil.which("strace")
    trace = os.path.join(folder, "strace.txt")
    if strace:
        command = [strace, "-f", "-qq", "-e", "trace=connect", "-o", trace, *command]
    returncode = subprocess.run(command).returncode
    connects = []
    if strace and os.path.exists(trace):
        with open(trace) as f:
            connects = [line.strip() for line in f if "AF_INET" in line]
    with LOCK:
        report = {**LOG, "connects": connects, "returncode": returncode, "strace": bool(strace)}
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
