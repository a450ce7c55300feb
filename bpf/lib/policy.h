/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Zone of an address and the policy verdict for a zone pair: at most five
 * exact-match hash lookups whatever the policy size (the compiler resolved
 * first-match into disjoint entries; see the ABI header for the order). */
#ifndef ZW_BPF_POLICY_H
#define ZW_BPF_POLICY_H

#include "lib/maps.h"

/* Exact VM address first (hash, O(1)); the LPM trie only for external CIDR
 * zones; anything else is the world. */
static __always_inline __u16 zw_zone_of(__u32 gen, const __u8 *addr)
{
	struct zw_addr_key ak = { .gen = gen };
	struct zw_cidr_key ck = { .prefixlen = 32 + 128, .gen = gen };
	struct zw_addr_info *info;

	zw_copy16(ak.addr, addr);
	info = bpf_map_lookup_elem(&zw_addrs, &ak);
	if (info)
		return info->zone;
	zw_copy16(ck.addr, addr);
	info = bpf_map_lookup_elem(&zw_cidrs, &ck);
	if (info)
		return info->zone;
	return ZW_ZONE_WORLD;
}

static __always_inline int zw_proto_has_port(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP ||
	       proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
}

/* The verdict for (src zone, dst zone, proto, port). A generation without
 * its default entries (never written completely) denies: fail closed. */
static __always_inline void zw_judge(__u32 gen, __u16 sz, __u16 dz, __u8 proto,
				     __u16 port, struct zw_verdict *out)
{
	struct zw_policy_key k = {
		.gen = gen, .src_zone = sz, .dst_zone = dz, .proto = proto,
	};
	struct zw_verdict *v;

	if (zw_proto_has_port(proto)) {
		k.kind = ZW_KIND_PORT;
		k.port = port;
		v = bpf_map_lookup_elem(&zw_policy, &k);
		if (v)
			goto hit;
		k.kind = ZW_KIND_BLOCK;
		k.port = port >> ZW_BLOCK_SHIFT;
		v = bpf_map_lookup_elem(&zw_policy, &k);
		if (v)
			goto hit;
	}
	k.kind = ZW_KIND_PROTO;
	k.port = 0;
	v = bpf_map_lookup_elem(&zw_policy, &k);
	if (v)
		goto hit;
	k.proto = ZW_PROTO_ANY;
	v = bpf_map_lookup_elem(&zw_policy, &k);
	if (v)
		goto hit;
	k.src_zone = 0;
	k.dst_zone = 0;
	k.proto = 0;
	k.kind = ZW_KIND_DEFAULT;
	k.port = sz == dz ? 0 : 1;
	v = bpf_map_lookup_elem(&zw_policy, &k);
	if (v)
		goto hit;
	out->rule_id = ZW_RULE_NONE;
	out->action = ZW_ACT_DENY;
	out->flags = 0;
	return;
hit:
	*out = *v;
}

#endif
