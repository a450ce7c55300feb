/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Guest hygiene: what a VM may say about itself (from-VM) and what may be
 * delivered to it (to-VM). Each check is switched per endpoint by the
 * ZW_EPF_* flags the control plane derives from the zone's "hygiene"
 * settings and from what it knows of the VM (docs/security.md). */
#ifndef ZW_BPF_ANTISPOOF_H
#define ZW_BPF_ANTISPOOF_H

#include "lib/maps.h"
#include "lib/parse.h"

/* As a 32- and a 16-bit word: both MACs 4-byte aligned (struct zw_pkt,
 * struct zw_endpoint). */
static __always_inline int zw_mac_eq(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

/* IPv4 is stored IPv4-mapped (::ffff:a.b.c.d): all 96 bits of the prefix,
 * or an IPv6 address like 2001:db8::ffff:e000:1 passes for IPv4 multicast
 * (found by the datapath fuzzer). */
static __always_inline int zw_is_v4(const __u8 *a)
{
	return zw_is_v4_mapped(a);
}

static __always_inline int zw_is_v4_any(const __u8 *a)
{
	return zw_is_v4(a) && a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] == 0;
}

static __always_inline int zw_is_v6_link_local(const __u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

static __always_inline int zw_is_v6_any(const __u8 *a)
{
	__u64 hi, lo;

	__builtin_memcpy(&hi, a, 8);
	__builtin_memcpy(&lo, a + 8, 8);
	return hi == 0 && lo == 0;
}

/* Multicast or broadcast: IPv4 224.0.0.0/4 and above (multicast, reserved,
 * 255.255.255.255), IPv6 ff00::/8. Such packets have no single peer, so
 * they are judged per packet and never tracked. */
static __always_inline int zw_is_group(const __u8 *a)
{
	if (zw_is_v4(a))
		return a[12] >= 224;
	return a[0] == 0xff;
}

/* Does this VM interface own the address: its own (zw_addrs), or an
 * allowed address pair (zw_pairs, only looked up when the first misses)? */
ZW_SUBPROG int zw_owns(__u32 gen, const struct zw_addr16 *addr, __u32 ifindex)
{
	struct zw_addr_key k = {};
	struct zw_pair_key pk = { .ifindex = ifindex };
	struct zw_addr_val *av;
	struct zw_addr_info *info;
	__u32 *pair;

	if (!addr)
		return 0;
	zw_copy16(k.addr, addr->b);
	av = bpf_map_lookup_elem(&zw_addrs, &k);
	if (!av)
		return 0;
	info = &av->slot[ZW_SLOT(gen)];
	if (info->zone == ZW_ZONE_NONE)
		return 0;
	if (info->ifindex == ifindex)
		return 1;
	if (!(info->flags & ZW_AIF_SHARED))
		return 0;
	zw_copy16(pk.addr, addr->b);
	pair = bpf_map_lookup_elem(&zw_pairs, &pk);
	return pair && (*pair & (1u << ZW_SLOT(gen)));
}

/* ARP from the VM: sender MAC and address must be its own; 0.0.0.0 is a
 * probe (RFC 5227), allowed before the address is. */
static __always_inline int zw_check_arp(const struct zw_endpoint *ep, const struct zw_pkt *p,
					__u32 gen, __u32 ifindex)
{
	__u8 spa[16] ZW_ALIGNED8 = {};

	if (!(ep->flags & ZW_EPF_CHECK_ARP))
		return ZW_R_PASS_ARP;
	if ((ep->flags & ZW_EPF_CHECK_MAC) && !zw_mac_eq(p->arp_sha, ep->mac))
		return ZW_R_DROP_SPOOF_ARP;
	if (p->arp_spa == 0)
		return ZW_R_PASS_ARP;
	if (ep->flags & ZW_EPF_NO_ADDRS)
		return (ep->flags & ZW_EPF_CHECK_IP) ? ZW_R_DROP_SPOOF_ARP : ZW_R_PASS_ARP;
	zw_map_v4(spa, p->arp_spa);
	return zw_owns(gen, (const struct zw_addr16 *)(spa), ifindex) ? ZW_R_PASS_ARP : ZW_R_DROP_SPOOF_ARP;
}

/* Neighbour discovery and MLD from the VM. Router advertisements and
 * redirects are a router's; the others must come from the VM's own
 * address, link-local, or :: (duplicate address detection), an NA may only
 * announce the VM's own or a link-local target, and link-layer address
 * options must carry the VM's MAC. */
static __always_inline int zw_check_nd(const struct zw_endpoint *ep, const struct zw_pkt *p,
				       __u32 gen, __u32 ifindex)
{
	const __u8 *src = p->tuple.saddr;
	__u8 t = p->icmp_type;

	if (t == 134 || t == 137)
		return (ep->flags & ZW_EPF_BLOCK_RA) ? ZW_R_DROP_GUEST_RA : ZW_R_PASS_ND;
	if (!(ep->flags & ZW_EPF_CHECK_ND))
		return ZW_R_PASS_ND;
	if (!zw_is_v6_any(src) && !zw_is_v6_link_local(src) &&
	    ((ep->flags & ZW_EPF_NO_ADDRS) || !zw_owns(gen, (const struct zw_addr16 *)(src), ifindex)))
		return ZW_R_DROP_SPOOF_ND;
	if (t == 136 && !zw_is_v6_link_local(p->nd_target) &&
	    ((ep->flags & ZW_EPF_NO_ADDRS) || !zw_owns(gen, (const struct zw_addr16 *)(p->nd_target), ifindex)))
		return ZW_R_DROP_SPOOF_ND;
	if (p->nd_has_lladdr && (ep->flags & ZW_EPF_CHECK_MAC) && !zw_mac_eq(p->nd_lladdr, ep->mac))
		return ZW_R_DROP_SPOOF_ND;
	return ZW_R_PASS_ND;
}

/* From the VM, before conntrack and policy. Returns ZW_OK to go on, or the
 * reason to leave with (ARP and ND are decided here, by hygiene alone). */
static __always_inline int zw_hygiene_from_vm(const struct zw_endpoint *ep,
					      const struct zw_pkt *p, __u32 gen, __u32 ifindex)
{
	const __u8 *src = p->tuple.saddr;
	__u16 sport = bpf_ntohs(p->tuple.sport), dport = bpf_ntohs(p->tuple.dport);

	if ((ep->flags & ZW_EPF_CHECK_MAC) && !zw_mac_eq(p->src_mac, ep->mac))
		return ZW_R_DROP_SPOOF_MAC;
	if (p->l3 == ZW_L3_ARP)
		return zw_check_arp(ep, p, gen, ifindex);
	if (p->l3 == ZW_L3_ND)
		return zw_check_nd(ep, p, gen, ifindex);
	if (p->tuple.proto == IPPROTO_UDP) {
		if ((sport == 67 || sport == 547) && (ep->flags & ZW_EPF_BLOCK_DHCPD))
			return ZW_R_DROP_GUEST_DHCP;
		if ((sport == 68 && dport == 67) || (sport == 546 && dport == 547))
			return ZW_R_PASS_DHCP;
	}
	if (!(ep->flags & ZW_EPF_CHECK_IP))
		return ZW_OK;
	if (ep->flags & ZW_EPF_NO_ADDRS)
		return ZW_R_DROP_NO_ADDRESS;
	if (zw_is_v6_link_local(src))
		return ZW_OK;
	if (zw_is_v4_any(src) || zw_is_v6_any(src) || zw_is_group(src) ||
	    !zw_owns(gen, (const struct zw_addr16 *)(src), ifindex))
		return ZW_R_DROP_SPOOF_IP;
	return ZW_OK;
}

/* To the VM: with its addresses known, unicast IP must be for one of them
 * (a bridge floods unknown unicast; another VM's traffic is not this VM's
 * to see). Multicast, broadcast and link-local pass on to the policy. */
static __always_inline int zw_hygiene_to_vm(const struct zw_endpoint *ep,
					    const struct zw_pkt *p, __u32 gen, __u32 ifindex)
{
	const __u8 *dst = p->tuple.daddr;

	if ((ep->flags & (ZW_EPF_CHECK_IP | ZW_EPF_NO_ADDRS)) != ZW_EPF_CHECK_IP)
		return ZW_OK;
	if (p->l3 != ZW_L3_IP || zw_is_group(dst) || zw_is_v6_link_local(dst))
		return ZW_OK;
	return zw_owns(gen, (const struct zw_addr16 *)(dst), ifindex) ? ZW_OK : ZW_R_DROP_NOT_FOR_VM;
}

#endif
