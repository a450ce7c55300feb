/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing with a cursor. Every helper bounds-checks before each read
 * and returns a zw_parse code; anything it cannot judge becomes a drop
 * reason, never a pass. Addresses come out IPv4-mapped, ports in network
 * order, the policy port (destination port or ICMP type) in host order. */
#ifndef ZW_BPF_PARSE_H
#define ZW_BPF_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "lib/compiler.h"
#include "zonewall/abi/zonewall.h"

#ifndef IPPROTO_MH
#define IPPROTO_MH 135
#endif
#define ZW_IP_MF 0x2000
#define ZW_IP_OFFSET 0x1fff
#define ZW_ETH_P_8021AD 0x88A8

enum zw_l3 {
	ZW_L3_IP = 0,	/* IPv4 or IPv6, tuple filled */
	ZW_L3_ARP,
	ZW_L3_ND,	/* ICMPv6 neighbour discovery / MLD */
};

struct zw_cursor {
	void *pos;
	void *end;
};

/* Aligned and laid out for word access (zw_copy16_w, zw_map_v4, the
 * MAC compare): addresses at multiples of 8, MACs of 4. */
struct zw_pkt {
	struct zw_ct_key tuple;	/* as seen on the wire */
	union {			/* by packet kind; the stack is short */
		struct zw_ct_key inner;	/* ICMP errors: the quoted packet */
		struct {
			__u8 nd_target[16];	/* ND: NS/NA target address */
			__u8 nd_lladdr[6];	/* ND: the link-layer address option's MAC */
			__u8 pad1[2];
			__u8 arp_sha[6];	/* ARP sender hardware address */
			__u8 pad2[2];
			__be32 arp_spa;		/* ARP sender protocol (IPv4) address */
		};
	};
	__u16 policy_port;	/* host: dport, or ICMP type */
	__u8 l3;		/* enum zw_l3 */
	__u8 icmp_error;	/* inner is valid */
	__u8 icmp_type;		/* ICMP/ICMPv6 type, when proto is one */
	__u8 tcp_flags;		/* TCP flags byte (FIN 0x01 SYN 0x02 RST 0x04 ACK 0x10) */
	__u8 nd_has_lladdr;	/* ND: a source/target link-layer address option */
	__u8 fast;		/* may take the established fast path: IP, not an ICMP
				 * error, not to a group address, not DHCP */
	__u8 src_mac[6];	/* Ethernet source */
	__u8 pad0[2];
} ZW_ALIGNED8;

/* The last 8 bytes of a zw_ct_key (sport, dport, proto, zero padding) as
 * one word, as it lies in memory. Shifts, not a union: a word loaded back
 * over narrower stores cannot be forwarded from them (a stall of a dozen
 * cycles or more). */
static __always_inline __u64 zw_ct_key_w4(__be16 sport, __be16 dport, __u8 proto)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (__u64)sport | ((__u64)dport << 16) | ((__u64)proto << 32);
#else
	return ((__u64)sport << 48) | ((__u64)dport << 32) | ((__u64)proto << 24);
#endif
}

/* Returns -1 on success (keep going) or a zw_reason to leave with. */
#define ZW_OK (-1)

/* The second 64-bit word of ::ffff:a as it lies in memory (the first is 0). */
static __always_inline __u64 zw_v4_word(__be32 a)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return ((__u64)a << 32) | 0xffff0000ULL;
#else
	return 0x0000ffff00000000ULL | a;
#endif
}

/* ::ffff:a as two 64-bit stores (dst: 8-byte aligned, see zw_copy16_w). */
static __always_inline void zw_map_v4(__u8 *dst, __be32 a)
{
	((__u64 *)dst)[0] = 0;
	((__u64 *)dst)[1] = zw_v4_word(a);
}

/* DHCP and DHCPv6 ports (of UDP): such packets are decided by hygiene,
 * never by the established fast path. */
static __always_inline int zw_is_dhcp_port(__be16 sport, __be16 dport)
{
	__u16 s = bpf_ntohs(sport), d = bpf_ntohs(dport);

	return s == 67 || s == 68 || s == 546 || s == 547 || d == 67 || d == 68 || d == 546 ||
	       d == 547;
}

/* a: 8-byte aligned (word loads, see zw_copy16_w). */
static __always_inline int zw_is_v4_mapped(const __u8 *a)
{
	return ((const __u64 *)a)[0] == 0 && ((const __u32 *)a)[2] == bpf_htonl(0xffff);
}

static __always_inline int zw_icmp_is_echo_like(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == 0 || type == 8 || type == 13 || type == 14;
	return type == 128 || type == 129;
}

#define ZW_MAX_ND_OPTS 4	/* ND options walked for a link-layer address */

/* Neighbour discovery message at c->pos (ICMPv6 header): the target of an
 * NS/NA and the first source/target link-layer address option (type 1 in
 * RS/NS, type 2 in NA). A truncated option area is malformed. */
static __always_inline int zw_parse_nd(struct zw_cursor *c, struct zw_pkt *p)
{
	__u8 *m = c->pos, *o;
	__u8 want;
	int i;

	if (p->icmp_type == 135 || p->icmp_type == 136) {
		if ((void *)(m + 24) > c->end)
			return ZW_R_DROP_MALFORMED;
		zw_copy16_w(p->nd_target, m + 8);
		o = m + 24;
		want = p->icmp_type == 135 ? 1 : 2;
	} else if (p->icmp_type == 133) {
		o = m + 8;
		want = 1;
	} else {
		return ZW_OK;
	}
#pragma unroll
	for (i = 0; i < ZW_MAX_ND_OPTS; i++) {
		if ((void *)(o + 2) > c->end)
			return o == c->end ? ZW_OK : ZW_R_DROP_MALFORMED;
		if (o[1] == 0)
			return ZW_R_DROP_MALFORMED;	/* RFC 4861: length 0 is invalid */
		if (o[0] == want) {
			if ((void *)(o + 8) > c->end)
				return ZW_R_DROP_MALFORMED;
			__builtin_memcpy(p->nd_lladdr, o + 2, 6);
			p->nd_has_lladdr = 1;
			return ZW_OK;
		}
		o += (__u32)o[1] * 8;
	}
	return ZW_OK;
}

static __always_inline int zw_icmp_is_error(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

/* Ports (network order) of a transport header at c->pos for the tuple.
 * Only the first 8 bytes are needed, which is also all an ICMP error
 * quotes of the original packet. */
static __always_inline int zw_parse_ports(struct zw_cursor *c, __u8 proto,
					  struct zw_ct_key *t, __u16 *policy_port,
					  __u8 *type_out)
{
	__u8 *p = c->pos;

	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if ((void *)(p + 8) > c->end)
			return ZW_R_DROP_MALFORMED;
		__builtin_memcpy(&t->sport, p, 2);
		__builtin_memcpy(&t->dport, p + 2, 2);
		*policy_port = bpf_ntohs(t->dport);
		return ZW_OK;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if ((void *)(p + 8) > c->end)
			return ZW_R_DROP_MALFORMED;
		*type_out = p[0];
		*policy_port = p[0];
		if (zw_icmp_is_echo_like(proto, p[0])) {
			__builtin_memcpy(&t->sport, p + 4, 2);
			t->dport = t->sport;
		}
		return ZW_OK;
	default:
		return ZW_OK;
	}
}

/* IPv4 header at c->pos: fills addresses and protocol, advances past the
 * options. Fragments are refused (a non-first fragment has no ports to
 * judge; see docs/security.md). */
static __always_inline int zw_parse_ipv4(struct zw_cursor *c, struct zw_ct_key *t)
{
	struct iphdr *ip = c->pos;
	__u32 hlen;

	if ((void *)(ip + 1) > c->end)
		return ZW_R_DROP_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return ZW_R_DROP_MALFORMED;
	hlen = ip->ihl * 4;
	if (c->pos + hlen > c->end)
		return ZW_R_DROP_MALFORMED;
	if (ip->frag_off & bpf_htons(ZW_IP_MF | ZW_IP_OFFSET))
		return ZW_R_DROP_FRAGMENT;
	zw_map_v4(t->saddr, ip->saddr);
	zw_map_v4(t->daddr, ip->daddr);
	t->proto = ip->protocol;
	c->pos += hlen;
	return ZW_OK;
}

/* IPv6 header and up to ZW_MAX_IPV6_EXT extension headers. */
static __always_inline int zw_parse_ipv6(struct zw_cursor *c, struct zw_ct_key *t)
{
	struct ipv6hdr *ip6 = c->pos;
	__u8 nh;
	int i;

	if ((void *)(ip6 + 1) > c->end)
		return ZW_R_DROP_MALFORMED;
	if (ip6->version != 6)
		return ZW_R_DROP_MALFORMED;
	zw_copy16_w(t->saddr, &ip6->saddr);
	zw_copy16_w(t->daddr, &ip6->daddr);
	/* IPv4-mapped addresses never appear on the wire (RFC 4291 2.5.5.2);
	 * here they would alias the IPv4 address of the same bits. */
	if (zw_is_v4_mapped(t->saddr) || zw_is_v4_mapped(t->daddr))
		return ZW_R_DROP_MALFORMED;
	nh = ip6->nexthdr;
	c->pos = ip6 + 1;

#pragma unroll
	for (i = 0; i < ZW_MAX_IPV6_EXT; i++) {
		__u8 *h = c->pos;
		__u32 len;

		if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING &&
		    nh != IPPROTO_DSTOPTS && nh != IPPROTO_AH && nh != IPPROTO_MH)
			break;
		if ((void *)(h + 2) > c->end)
			return ZW_R_DROP_MALFORMED;
		/* AH counts 4-byte units minus 2, the others 8-byte units minus 1. */
		len = nh == IPPROTO_AH ? ((__u32)h[1] + 2) * 4 : ((__u32)h[1] + 1) * 8;
		nh = h[0];
		c->pos = h + len;
		if (c->pos > c->end)
			return ZW_R_DROP_MALFORMED;
	}
	if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	    nh == IPPROTO_AH || nh == IPPROTO_MH || nh == IPPROTO_FRAGMENT)
		return nh == IPPROTO_FRAGMENT ? ZW_R_DROP_FRAGMENT : ZW_R_DROP_IPV6_EXT;
	t->proto = nh;
	return ZW_OK;
}

#endif
