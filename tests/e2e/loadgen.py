#!/usr/bin/python3
"""Counted traffic for the reliability e2e tests; runs inside a lab namespace.

Every mode runs until the file given by --stop exists, then writes its
counters as JSON to --out (atomically) and exits 0.

  udp-stream ADDR PORT --rate PPS     sequence-numbered datagrams to an echo
                                      server; counts replies per sequence number
                                      (lost = sent - distinct replies); --ready
                                      gets the stream's source port
  tcp-stream ADDR PORT --rate LPS     ONE connection, "seq N" lines to a line
                                      echo; at stop, waits until every line came
                                      back; an error (reset, EOF) ends it and is
                                      reported - a reconnect is never attempted;
                                      --ready gets the session's source port
  sink --udp PORT --tcp PORT          counts datagrams and accepted connections
                                      that reach it (the forbidden receiver)
  deny-send ADDR [ADDR..] --udp P --tcp P --rate N
                                      keeps trying traffic the policy denies:
                                      datagrams and non-blocking TCP connects

Standard library only (/usr/bin/python3).
"""
import argparse
import json
import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netprobe import dual_stack  # noqa: E402 (next to this file)


def stop_requested(args):
    return os.path.exists(args.stop)


def write_out(args, data):
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, args.out)


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def ready(args, text=""):
    if args.ready:
        with open(args.ready + ".tmp", "w") as f:
            f.write(text)
        os.rename(args.ready + ".tmp", args.ready)


def udp_stream(args):
    s = socket.socket(family(args.addr), socket.SOCK_DGRAM)
    s.connect((args.addr, args.port))
    s.setblocking(False)
    got = set()
    dups = 0
    sent = 0
    interval = 1.0 / args.rate
    nxt = time.monotonic()
    ready(args, "%d\n" % s.getsockname()[1])  # the stream's source port

    def drain(timeout):
        nonlocal dups
        r, _, _ = select.select([s], [], [], timeout)
        while r:
            try:
                data = s.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
            seq = int(data.split()[1])
            if seq in got:
                dups += 1
            got.add(seq)

    while not stop_requested(args):
        now = time.monotonic()
        if now >= nxt:
            try:
                s.send(b"useq %d pad" % sent)
            except ConnectionRefusedError:
                pass
            sent += 1
            nxt += interval
            if nxt < now - 1:  # never burst after a stall: keep the rate
                nxt = now
        drain(max(0.0, nxt - time.monotonic()))
    deadline = time.monotonic() + 2.0
    while len(got) < sent and time.monotonic() < deadline:
        drain(0.05)
    write_out(args, {"sent": sent, "received": len(got), "lost": sent - len(got), "dups": dups})


def tcp_stream(args):
    out = {"sent": 0, "echoed": 0, "error": None, "out_of_order": 0}
    try:
        s = socket.create_connection((args.addr, args.port), timeout=5)
    except OSError as e:
        out["error"] = "connect: %s" % e
        write_out(args, out)
        return
    s.settimeout(None)
    ready(args, "%d\n" % s.getsockname()[1])  # the session's source port
    done = threading.Event()
    lock = threading.Lock()

    def reader():
        f = s.makefile("rb")
        want = 0
        try:
            for line in f:
                seq = int(line.split()[1])
                with lock:
                    if seq != want:
                        out["out_of_order"] += 1
                    want = seq + 1
                    out["echoed"] += 1
                if done.is_set() and out["echoed"] >= out["sent"]:
                    return
            with lock:
                if out["echoed"] < out["sent"] and out["error"] is None:
                    out["error"] = "EOF from the peer after %d lines" % out["echoed"]
        except OSError as e:
            with lock:
                out["error"] = "recv: %s" % e

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    interval = 1.0 / args.rate
    nxt = time.monotonic()
    while not stop_requested(args) and out["error"] is None:
        try:
            s.sendall(b"seq %d\n" % out["sent"])
        except OSError as e:
            out["error"] = "send: %s" % e
            break
        with lock:
            out["sent"] += 1
        nxt += interval
        time.sleep(max(0.0, nxt - time.monotonic()))
    done.set()
    # Everything sent must come back; TCP retransmits what a drop lost.
    deadline = time.monotonic() + 10.0
    while out["echoed"] < out["sent"] and out["error"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if out["echoed"] < out["sent"] and out["error"] is None:
        out["error"] = "only %d of %d lines echoed within 10 s of the stop" % (out["echoed"], out["sent"])
    s.close()
    write_out(args, out)


def sink(args):
    u = dual_stack(socket.SOCK_DGRAM, args.udp)
    t = dual_stack(socket.SOCK_STREAM, args.tcp)
    t.listen(128)
    counts = {"udp": 0, "tcp": 0, "sources": []}
    ready(args)
    while not stop_requested(args):
        r, _, _ = select.select([u, t], [], [], 0.1)
        for s in r:
            if s is u:
                _, peer = u.recvfrom(2048)
                counts["udp"] += 1
            else:
                c, peer = t.accept()
                c.close()
                counts["tcp"] += 1
            if len(counts["sources"]) < 10:
                counts["sources"].append(str(peer[0]))
    write_out(args, counts)


def deny_send(args):
    sent = {"udp": 0, "tcp": 0}
    interval = 1.0 / args.rate
    pending = []
    ready(args)
    while not stop_requested(args):
        for addr in args.addr:
            with socket.socket(family(addr), socket.SOCK_DGRAM) as u:
                try:
                    u.sendto(b"forbidden %d" % sent["udp"], (addr, args.udp))
                    sent["udp"] += 1
                except OSError:
                    pass
            c = socket.socket(family(addr), socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect((addr, args.tcp))
            except BlockingIOError:
                pass
            except OSError:
                pass
            sent["tcp"] += 1
            pending.append((time.monotonic(), c))
        # A connect attempt lives 1 s (SYN retransmits included), then goes.
        now = time.monotonic()
        while pending and now - pending[0][0] > 1.0:
            pending.pop(0)[1].close()
        time.sleep(interval)
    for _, c in pending:
        c.close()
    write_out(args, sent)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    for name in ("udp-stream", "tcp-stream"):
        p = sub.add_parser(name)
        p.add_argument("addr")
        p.add_argument("port", type=int)
        p.add_argument("--rate", type=float, default=100)
    p = sub.add_parser("sink")
    p.add_argument("--udp", type=int, required=True)
    p.add_argument("--tcp", type=int, required=True)
    p = sub.add_parser("deny-send")
    p.add_argument("addr", nargs="+")
    p.add_argument("--udp", type=int, required=True)
    p.add_argument("--tcp", type=int, required=True)
    p.add_argument("--rate", type=float, default=50)
    for p in sub.choices.values():
        p.add_argument("--stop", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--ready")
    args = ap.parse_args()
    {"udp-stream": udp_stream, "tcp-stream": tcp_stream, "sink": sink, "deny-send": deny_send}[args.mode](args)


if __name__ == "__main__":
    main()
