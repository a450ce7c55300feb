/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Zone of an address and the policy verdict for a zone pair: at most five
 * exact-match hash lookups whatever the policy size (the compiler resolved
 * first-match into disjoint entries; see the ABI header for the order). */
#ifndef ZW_BPF_POLICY_H
#define ZW_BPF_POLICY_H

#include "lib/maps.h"

/* Zone of an address, and the VM interface owning it (0: none, or shared):
 * the exact VM address first (hash, O(1)); the LPM trie only for external
 * CIDR zones; anything else is the world. */
ZW_SUBPROG __u32 zw_addr_of(__u32 gen, const struct zw_addr16 *addr, __u32 *ifindex)
{
	struct zw_addr_key ak = { .gen = gen };
	struct zw_cidr_key ck = { .prefixlen = 32 + 128, .gen = gen };
	struct zw_addr_info *info;

	if (!addr || !ifindex)
		return ZW_ZONE_WORLD;
	*ifindex = 0;
	zw_copy16(ak.addr, addr->b);
	info = bpf_map_lookup_elem(&zw_addrs, &ak);
	if (info) {
		*ifindex = info->ifindex;
		return info->zone;
	}
	zw_copy16(ck.addr, addr->b);
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

/* The verdict for q = (gen, src zone, dst zone, proto, port; kind
 * ignored): one lookup tells which kinds of entries the zone pair has (none:
 * the defaults decide, from the config already at hand), then only those
 * are looked up, in the order the compiler made disjoint (ABI header). */
ZW_SUBPROG int zw_judge(const struct zw_config *cfg, const struct zw_policy_key *q,
			struct zw_verdict *out)
{
	struct zw_zpair_key zk = {};
	struct zw_policy_key k = {};
	struct zw_zpair *zp;
	struct zw_verdict *v;
	__u16 port;
	__u8 kinds;

	if (!cfg || !q || !out)
		return 0;
	zk.gen = q->gen;
	zk.src_zone = q->src_zone;
	zk.dst_zone = q->dst_zone;
	k.gen = q->gen;
	k.src_zone = q->src_zone;
	k.dst_zone = q->dst_zone;
	k.proto = q->proto;
	port = q->port;

	zp = bpf_map_lookup_elem(&zw_zpairs, &zk);
	if (!zp)
		goto dflt;
	kinds = zp->kinds;
	if (zw_proto_has_port(q->proto)) {
		if (kinds & ZW_ZPK_PORT) {
			k.kind = ZW_KIND_PORT;
			k.port = port;
			v = bpf_map_lookup_elem(&zw_policy, &k);
			if (v)
				goto hit;
		}
		if (kinds & ZW_ZPK_BLOCK) {
			k.kind = ZW_KIND_BLOCK;
			k.port = port >> ZW_BLOCK_SHIFT;
			v = bpf_map_lookup_elem(&zw_policy, &k);
			if (v)
				goto hit;
		}
	}
	k.kind = ZW_KIND_PROTO;
	k.port = 0;
	if (kinds & ZW_ZPK_PROTO) {
		v = bpf_map_lookup_elem(&zw_policy, &k);
		if (v)
			goto hit;
	}
	if (kinds & ZW_ZPK_ANY) {
		k.proto = ZW_PROTO_ANY;
		v = bpf_map_lookup_elem(&zw_policy, &k);
		if (v)
			goto hit;
	}
dflt:
	*out = cfg->dflt[q->gen & 1][q->src_zone == q->dst_zone ? 0 : 1];
	return 0;
hit:
	*out = *v;
	return 0;
}

#endif
