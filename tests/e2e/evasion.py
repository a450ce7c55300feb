#!/usr/bin/python3
"""Crafted frames from a guest, and a sniffer on its victim (tests/e2e/test_evasion.sh).

  evasion.py send  --iface eth0 --mac M --ip4 A --ip6 A6 --victim-mac VM --victim4 V --victim6 V6
                   --other4 O --other6 O6 --other-mac OM --tag T
  evasion.py sniff --iface eth0 --out FILE --ready FILE   (until SIGTERM)

Every crafted frame carries a payload "ZWEVADE:<case>:<tag>" (or, for ARP/ND/RA/
DHCP, fields the sniffer recognises), so the sniffer can say exactly which case
reached the victim. Cases named ok-* are ones the policy allows: they must
arrive, which proves the sniffer sees what the attacker sends.
Run with Debian's /usr/bin/python3 (python3-scapy).
"""
import argparse
import json
import signal
import sys
import time

from scapy.all import (ARP, DHCP, BOOTP, ICMP, IP, IPv6, TCP, UDP, Dot1Q, Dot1AD, Ether, Raw,
                       AsyncSniffer, ICMPv6ND_NA, ICMPv6ND_RA, ICMPv6NDOptDstLLAddr,
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                       IPv6ExtHdrRouting, IPOption_RR, conf, fragment, sendp)

conf.verb = 0


def cases(a):
    """(name, frame) pairs; names starting with ok- are allowed by the lab policy."""
    eth = Ether(src=a.mac, dst=a.victim_mac)
    bcast = Ether(src=a.mac, dst="ff:ff:ff:ff:ff:ff")

    def tag(name):
        return Raw(load=f"ZWEVADE:{name}:{a.tag}".encode())

    out = []

    def add(name, frame):
        out.append((name, frame))

    # Controls: what the policy allows (web -> db tcp/5432, udp/53) arrives.
    add("ok-tcp5432", eth / IP(src=a.ip4, dst=a.victim4) / TCP(sport=41001, dport=5432, flags="S") / tag("ok-tcp5432"))
    add("ok-udp53", eth / IP(src=a.ip4, dst=a.victim4) / UDP(sport=41002, dport=53) / tag("ok-udp53"))
    add("ok-udp53-v6", eth / IPv6(src=a.ip6, dst=a.victim6) / UDP(sport=41003, dport=53) / tag("ok-udp53-v6"))
    # Forbidden in plain form (web -> db tcp/22 is only for admin).
    add("plain-tcp22", eth / IP(src=a.ip4, dst=a.victim4) / TCP(sport=41010, dport=22, flags="S") / tag("plain-tcp22"))
    # Spoofing admin-1 (whose zone may reach db on tcp/22).
    add("spoof-ip", eth / IP(src=a.other4, dst=a.victim4) / TCP(sport=41011, dport=22, flags="S") / tag("spoof-ip"))
    add("spoof-ip6", eth / IPv6(src=a.other6, dst=a.victim6) / TCP(sport=41012, dport=22, flags="S") / tag("spoof-ip6"))
    add("spoof-mac-ip", Ether(src=a.other_mac, dst=a.victim_mac) / IP(src=a.other4, dst=a.victim4) /
        TCP(sport=41013, dport=22, flags="S") / tag("spoof-mac-ip"))
    add("spoof-mac-own-ip", Ether(src=a.other_mac, dst=a.victim_mac) / IP(src=a.ip4, dst=a.victim4) /
        TCP(sport=41014, dport=5432, flags="S") / tag("spoof-mac-own-ip"))
    # Tagged frames.
    add("vlan", eth / Dot1Q(vlan=7) / IP(src=a.ip4, dst=a.victim4) / UDP(sport=41020, dport=53) / tag("vlan"))
    add("qinq", Ether(src=a.mac, dst=a.victim_mac) / Dot1AD(vlan=5) / Dot1Q(vlan=7) /
        IP(src=a.ip4, dst=a.victim4) / UDP(sport=41021, dport=53) / tag("qinq"))
    # IPv4 fragments: an allowed port split up, a forbidden one, and a tiny
    # first fragment (ports only, claiming 5432) overlapped by one rewriting
    # the port to 22. Every piece of a case goes under the case's name; the
    # tag travels in one of them.
    big = IP(src=a.ip4, dst=a.victim4, id=4242) / UDP(sport=41030, dport=53) / tag("frag-allowed") / Raw(load=b"x" * 1200)
    for f in fragment(big, fragsize=512):
        add("frag-allowed", eth / f)
    bad = IP(src=a.ip4, dst=a.victim4, id=4243) / TCP(sport=41031, dport=22, flags="S") / tag("frag-tcp22") / Raw(load=b"y" * 600)
    for f in fragment(bad, fragsize=256):
        add("frag-tcp22", eth / f)
    raw = bytes(TCP(sport=41032, dport=5432, flags="S")) + b"ZWEVADE:frag-overlap:" + a.tag.encode()
    over = bytearray(raw)
    over[2:4] = (22).to_bytes(2, "big")
    frag = dict(src=a.ip4, dst=a.victim4, id=4244, proto=6)
    add("frag-overlap", eth / IP(flags="MF", frag=0, **frag) / Raw(load=raw[:8]))
    add("frag-overlap", eth / IP(flags="MF", frag=0, **frag) / Raw(load=bytes(over[:16])))
    add("frag-overlap", eth / IP(frag=2, **frag) / Raw(load=raw[16:]))
    # IPv6 fragment header, extension chains within and beyond the bound.
    add("frag6", eth / IPv6(src=a.ip6, dst=a.victim6) / IPv6ExtHdrFragment(id=7, m=1) /
        UDP(sport=41040, dport=53) / tag("frag6"))
    chain = IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting()
    add("ext3-tcp22", eth / IPv6(src=a.ip6, dst=a.victim6) / chain / TCP(sport=41041, dport=22, flags="S") / tag("ext3-tcp22"))
    long_chain = IPv6ExtHdrHopByHop()
    for _ in range(9):
        long_chain = long_chain / IPv6ExtHdrDestOpt()
    add("ext10-udp53", eth / IPv6(src=a.ip6, dst=a.victim6) / long_chain / UDP(sport=41042, dport=53) / tag("ext10-udp53"))
    add("ok-ext3-udp53", eth / IPv6(src=a.ip6, dst=a.victim6) / chain / UDP(sport=41043, dport=53) / tag("ok-ext3-udp53"))
    # IPv4 options do not hide the port.
    add("ipopt-tcp22", eth / IP(src=a.ip4, dst=a.victim4, options=[IPOption_RR(routers=["0.0.0.0"] * 3)]) /
        TCP(sport=41050, dport=22, flags="S") / tag("ipopt-tcp22"))
    add("ok-ipopt-udp53", eth / IP(src=a.ip4, dst=a.victim4, options=[IPOption_RR(routers=["0.0.0.0"] * 3)]) /
        UDP(sport=41051, dport=53) / tag("ok-ipopt-udp53"))
    # TCP that does not open a flow, to an allowed port.
    for fl in ("A", "R", "F", "FA", "SA", ""):
        add(f"tcp-{fl or 'null'}", eth / IP(src=a.ip4, dst=a.victim4) / TCP(sport=41060, dport=5432, flags=fl) / tag(f"tcp-{fl or 'null'}"))
    # An ICMP error quoting a flow that does not exist.
    quoted = IP(src=a.victim4, dst=a.ip4) / UDP(sport=53, dport=41999)
    add("icmp-unrelated", eth / IP(src=a.ip4, dst=a.victim4) / ICMP(type=3, code=3) / Raw(load=bytes(quoted)[:28]) / tag("icmp-unrelated"))
    # ICMPv6 carried by IPv4 (protocol 58), shaped like neighbour discovery.
    add("icmp6-over-ip4", eth / IP(src=a.ip4, dst=a.victim4, proto=58) / Raw(load=bytes([143, 0, 0, 0]) + b"ZWEVADE:icmp6-over-ip4:" + a.tag.encode()))
    # IPv4-mapped IPv6 source: admin-1's IPv4 in disguise.
    add("mapped-v6", eth / IPv6(src="::ffff:" + a.other4, dst=a.victim6) / TCP(sport=41070, dport=22, flags="S") / tag("mapped-v6"))
    # Unknown ethertype.
    add("ethertype", Ether(src=a.mac, dst=a.victim_mac, type=0x88B5) / tag("ethertype"))
    # Broadcast and multicast the policy does not allow (web -> world).
    add("bcast-udp", bcast / IP(src=a.ip4, dst="255.255.255.255") / UDP(sport=41080, dport=53) / tag("bcast-udp"))
    add("mcast-udp", Ether(src=a.mac, dst="01:00:5e:00:00:fb") / IP(src=a.ip4, dst="224.0.0.251") / UDP(sport=5353, dport=5353) / tag("mcast-udp"))
    # Claims on others' addresses and roles (recognised by the sniffer by fields).
    add("arp-spoof", bcast / ARP(op=2, hwsrc=a.mac, psrc=a.other4, hwdst="ff:ff:ff:ff:ff:ff", pdst=a.other4))
    add("na-spoof", Ether(src=a.mac, dst="33:33:00:00:00:01") / IPv6(src=a.ip6, dst="ff02::1") /
        ICMPv6ND_NA(tgt=a.other6, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=a.mac))
    add("ra", Ether(src=a.mac, dst="33:33:00:00:00:01") / IPv6(src="fe80::bad", dst="ff02::1") / ICMPv6ND_RA())
    add("dhcp-offer", bcast / IP(src=a.ip4, dst="255.255.255.255") / UDP(sport=67, dport=68) /
        BOOTP(op=2, yiaddr=a.victim4, chaddr=bytes.fromhex(a.victim_mac.replace(":", ""))) /
        DHCP(options=[("message-type", "offer"), "end"]))
    return out


def do_send(a):
    sent = []
    for _ in range(a.rounds):
        for name, frame in cases(a):
            sendp(frame, iface=a.iface)
            sent.append(name)
        time.sleep(0.05)
    print(json.dumps(sorted(set(sent))))


def do_sniff(a):
    seen = set()

    def look(p):
        raw = bytes(p)
        i = raw.find(b"ZWEVADE:")
        if i >= 0:
            name = raw[i + 8:].split(b":", 1)[0].decode(errors="replace")
            seen.add(name)
            return
        if p.haslayer(ARP) and p[ARP].psrc == a.other4 and p[ARP].hwsrc.lower() == a.attacker_mac.lower():
            seen.add("arp-spoof")
        elif p.haslayer(ICMPv6ND_NA) and p[ICMPv6ND_NA].tgt == a.other6 and p[Ether].src.lower() == a.attacker_mac.lower():
            seen.add("na-spoof")
        elif p.haslayer(ICMPv6ND_RA) and p[Ether].src.lower() == a.attacker_mac.lower():
            seen.add("ra")
        elif p.haslayer(BOOTP) and p[BOOTP].op == 2 and p[Ether].src.lower() == a.attacker_mac.lower():
            seen.add("dhcp-offer")

    s = AsyncSniffer(iface=a.iface, prn=look, store=False)
    s.start()
    time.sleep(0.5)
    open(a.ready, "w").close()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.1)
    s.stop()
    with open(a.out, "w") as f:
        json.dump(sorted(seen), f)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    for k in ("iface", "mac", "ip4", "ip6", "victim-mac", "victim4", "victim6", "other4", "other6",
              "other-mac", "tag"):
        s.add_argument("--" + k, required=True)
    s.add_argument("--rounds", type=int, default=2)
    r = sub.add_parser("sniff")
    for k in ("iface", "out", "ready", "attacker-mac", "other4", "other6"):
        r.add_argument("--" + k, required=True)
    a = ap.parse_args()
    if a.cmd == "send":
        do_send(a)
    else:
        do_sniff(a)


if __name__ == "__main__":
    sys.exit(main())
