#!/usr/bin/python3
"""Traffic endpoints for the e2e tests; runs inside a lab namespace.

  serve --tcp 22,80 --udp 53 [--ready FILE]  TCP line echo + UDP echo on [::] (v4 and v6)
  udp-probe ADDR PORT [--timeout S]          exit 0 iff the echo comes back in time
  icmp-probe ADDR [--timeout S]              one echo request (fallback when ping is absent)
  tcp-session ADDR PORT [--interval S]       long-lived client: sends "seq N" every
                                             interval, prints "sent N T" and "ok N T"
                                             (T = time.time()) lines, flushed, until killed

Standard library only, so /usr/bin/python3 runs it without extra packages.
"""
import argparse
import os
import select
import socket
import struct
import sys
import threading
import time


def ports(text):
    return [int(p) for p in text.split(",") if p] if text else []


def dual_stack(kind, port):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    return s


def tcp_client(conn):
    with conn:
        try:
            f = conn.makefile("rb")
            for line in f:
                conn.sendall(line)
        except OSError:
            pass


def tcp_accept_loop(ls):
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=tcp_client, args=(conn,), daemon=True).start()


def serve(args):
    listeners = []
    for p in ports(args.tcp):
        s = dual_stack(socket.SOCK_STREAM, p)
        s.listen(64)
        listeners.append(s)
    udp = [dual_stack(socket.SOCK_DGRAM, p) for p in ports(args.udp)]
    for s in listeners:
        threading.Thread(target=tcp_accept_loop, args=(s,), daemon=True).start()
    if args.ready:
        with open(args.ready + ".tmp", "w") as f:
            f.write("%d\n" % os.getpid())
        os.rename(args.ready + ".tmp", args.ready)
    if not udp:
        threading.Event().wait()
    while True:
        readable, _, _ = select.select(udp, [], [])
        for s in readable:
            data, peer = s.recvfrom(65535)
            s.sendto(data, peer)


def udp_probe(args):
    fam, _, _, _, addr = socket.getaddrinfo(args.addr, args.port, 0, socket.SOCK_DGRAM)[0]
    nonce = os.urandom(8).hex().encode()
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(args.timeout)
        s.connect(addr)
        s.send(b"probe " + nonce)
        deadline = time.monotonic() + args.timeout
        while True:
            try:
                data = s.recv(65535)
            except socket.timeout:
                print("udp %s:%d: no reply in %.1fs" % (args.addr, args.port, args.timeout))
                return 1
            except ConnectionRefusedError:
                print("udp %s:%d: port unreachable (nothing listening?)" % (args.addr, args.port))
                return 2
            if nonce in data:
                return 0
            s.settimeout(max(0.01, deadline - time.monotonic()))


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_probe(args):
    fam = socket.getaddrinfo(args.addr, None)[0][0]
    ident = os.getpid() & 0xFFFF
    if fam == socket.AF_INET6:
        s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        req, rep = 128, 129
    else:
        s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        req, rep = 8, 0
    payload = os.urandom(16)
    hdr = struct.pack("!BBHHH", req, 0, 0, ident, 1)
    csum = 0 if fam == socket.AF_INET6 else checksum(hdr + payload)  # kernel fills v6
    s.sendto(struct.pack("!BBHHH", req, 0, csum, ident, 1) + payload, (args.addr, 0))
    deadline = time.monotonic() + args.timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            print("icmp %s: no echo reply in %.1fs" % (args.addr, args.timeout))
            return 1
        data = s.recv(65535)
        if fam == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:]
        if len(data) >= 8:
            t, _, _, i, _ = struct.unpack("!BBHHH", data[:8])
            if t == rep and i == ident and data[8:] == payload:
                return 0


def tcp_session(args):
    fam, _, _, _, addr = socket.getaddrinfo(args.addr, args.port, 0, socket.SOCK_STREAM)[0]
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(addr)
    s.setblocking(False)
    print("connected %s %.3f" % (s.getsockname()[1], time.time()), flush=True)
    seq, buf, next_send = 0, b"", time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_send:
            seq += 1
            try:
                s.send(b"seq %d\n" % seq)
            except BlockingIOError:
                pass
            print("sent %d %.3f" % (seq, time.time()), flush=True)
            next_send = now + args.interval
        readable, _, _ = select.select([s], [], [], max(0, next_send - time.monotonic()))
        if readable:
            try:
                chunk = s.recv(65535)
            except OSError as e:
                print("error %s %.3f" % (e, time.time()), flush=True)
                return 1
            if not chunk:
                print("closed 0 %.3f" % time.time(), flush=True)
                return 1
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                print("ok %s %.3f" % (line.split()[-1].decode(), time.time()), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--tcp", default="")
    p.add_argument("--udp", default="")
    p.add_argument("--ready")
    p = sub.add_parser("udp-probe")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, default=1.0)
    p = sub.add_parser("icmp-probe")
    p.add_argument("addr")
    p.add_argument("--timeout", type=float, default=1.0)
    p = sub.add_parser("tcp-session")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p.add_argument("--interval", type=float, default=0.1)
    args = ap.parse_args()
    fn = {"serve": serve, "udp-probe": udp_probe, "icmp-probe": icmp_probe,
          "tcp-session": tcp_session}[args.cmd]
    try:
        return fn(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
