#!/usr/bin/python3
"""Probes for the cluster e2e test (tests/e2e/test_cluster.sh); runs inside a VM namespace.

  probe PROTO ADDR [PORT] [--timeout S]     one probe; exit 0 = answered, 1 = no answer
                                            (dropped), 2 = refused/unreachable
  loop PROTO ADDR [PORT] [--interval S] [--timeout S]
                                            probes until killed, one line per probe,
                                            flushed: "T ok|drop|refused MS" (T = time.time()
                                            when it was sent, MS = how long it took)
  stream ADDR PORT [--interval S]           UDP to an echo port every interval (default 10 ms)
                                            without waiting: prints "sent N T" and "ok N T"
                                            (T = when N was sent), flushed, until killed
  announce IFACE MAC IPV4 IPV6              what a hypervisor sends for a VM that has just
                                            moved (QEMU's announce after live migration): a
                                            gratuitous ARP and an unsolicited neighbour
                                            advertisement, so the bridges learn its new port

PROTO is tcp (connect to PORT), udp (echo on PORT, netprobe.py serve) or icmp (echo
request). UDP and ICMP reuse netprobe.py's probes. Standard library only.
"""
import argparse
import contextlib
import io
import os
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netprobe  # noqa: E402  (same directory)


def tcp(addr, port, timeout):
    fam, _, _, _, sa = socket.getaddrinfo(addr, port, 0, socket.SOCK_STREAM)[0]
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(sa)
        except (socket.timeout, TimeoutError):
            return 1, "tcp %s:%d: no answer in %.2fs" % (addr, port, timeout)
        except ConnectionRefusedError:
            return 2, "tcp %s:%d: refused" % (addr, port)
        except OSError as e:  # EHOSTUNREACH, ENETUNREACH: something answered or no route
            return 2, "tcp %s:%d: %s" % (addr, port, e)
    return 0, "tcp %s:%d: connected" % (addr, port)


def one(proto, addr, port, timeout):
    if proto == "tcp":
        return tcp(addr, port, timeout)
    ns = argparse.Namespace(addr=addr, port=port, timeout=timeout)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            rc = netprobe.udp_probe(ns) if proto == "udp" else netprobe.icmp_probe(ns)
        except OSError as e:
            print("%s %s: %s" % (proto, addr, e))
            rc = 2
    return rc, out.getvalue().strip() or "%s %s: answered" % (proto, addr)


def announce(ifname, mac, v4, v6):
    hw = bytes.fromhex(mac.replace(":", ""))
    ip4 = socket.inet_aton(v4)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, hw, ip4, b"\0" * 6, ip4)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        s.send(b"\xff" * 6 + hw + struct.pack("!H", 0x0806) + arp)
    # ICMPv6 NA to ff02::1: router 0, solicited 0, override 1; option 2 = target MAC.
    na = struct.pack("!BBHI16sBB6s", 136, 0, 0, 0x20000000, socket.inet_pton(socket.AF_INET6, v6), 2, 1, hw)
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex(ifname))
        s.bind((v6, 0))
        s.sendto(na, ("ff02::1", 0, 0, socket.if_nametoindex(ifname)))
    return 0


def stream(addr, port, interval):
    fam, _, _, _, sa = socket.getaddrinfo(addr, port, 0, socket.SOCK_DGRAM)[0]
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setblocking(False)
    seq, sent, next_send = 0, {}, time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_send:
            seq += 1
            sent[seq] = time.time()
            try:
                s.sendto(b"stream %d" % seq, sa)
            except OSError:
                pass
            print("sent %d %.3f" % (seq, sent[seq]), flush=True)
            next_send += interval
        if select.select([s], [], [], max(0, next_send - time.monotonic()))[0]:
            try:
                data = s.recv(65535)
            except OSError:
                continue
            parts = data.split()
            if len(parts) == 2 and parts[0] == b"stream" and int(parts[1]) in sent:
                n = int(parts[1])
                print("ok %d %.3f" % (n, sent.pop(n)), flush=True)


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "announce":
        return announce(*sys.argv[2:])
    if sys.argv[1:2] == ["stream"]:
        sp = argparse.ArgumentParser(prog="cluster_probe.py stream")
        sp.add_argument("addr")
        sp.add_argument("port", type=int)
        sp.add_argument("--interval", type=float, default=0.01)
        a = sp.parse_args(sys.argv[2:])
        try:
            return stream(a.addr, a.port, a.interval)
        except KeyboardInterrupt:
            return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["probe", "loop"])
    ap.add_argument("proto", choices=["tcp", "udp", "icmp"])
    ap.add_argument("addr")
    ap.add_argument("port", type=int, nargs="?", default=0)
    ap.add_argument("--timeout", type=float, default=0.5)
    ap.add_argument("--interval", type=float, default=0.05)
    a = ap.parse_args()
    if a.proto != "icmp" and not a.port:
        ap.error("%s needs a PORT" % a.proto)
    if a.mode == "probe":
        rc, msg = one(a.proto, a.addr, a.port, a.timeout)
        print(msg)
        return rc
    names = {0: "ok", 1: "drop", 2: "refused"}
    try:
        while True:
            t0 = time.time()
            rc, _ = one(a.proto, a.addr, a.port, a.timeout)
            took = time.time() - t0
            print("%.3f %s %.1f" % (t0, names.get(rc, "refused"), took * 1000), flush=True)
            time.sleep(max(0.0, a.interval - took))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
