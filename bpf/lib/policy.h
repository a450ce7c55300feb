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
	struct zw_addr_key ak = {};
	struct zw_cidr_key ck = { .prefixlen = 128 };
	struct zw_addr_val *av;
	struct zw_addr_info *info;

	if (!addr || !ifindex)
		return ZW_ZONE_WORLD;
	*ifindex = 0;
	zw_copy16(ak.addr, addr->b);
	av = bpf_map_lookup_elem(&zw_addrs, &ak);
	if (av) {
		info = &av->slot[ZW_SLOT(gen)];
		if (info->zone != ZW_ZONE_NONE) {
			*ifindex = info->ifindex;
			return info->zone;
		}
	}
	zw_copy16(ck.addr, addr->b);
	av = bpf_map_lookup_elem(&zw_cidrs, &ck);
	if (av && av->slot[ZW_SLOT(gen)].zone != ZW_ZONE_NONE)
		return av->slot[ZW_SLOT(gen)].zone;
	return ZW_ZONE_WORLD;
}

static __always_inline int zw_proto_has_port(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP ||
	       proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
}

/* The verdict for q = (src zone, dst zone, proto, port; kind ignored) in
 * generation gen: one lookup tells which kinds of entries the zone pair has (none:
 * the defaults decide, from the config already at hand), then only those
 * are looked up, in the order the compiler made disjoint (ABI header). */
ZW_SUBPROG int zw_judge(const struct zw_config *cfg, __u32 gen, const struct zw_policy_key *q,
			struct zw_verdict *out)
{
	struct zw_zpair_key zk = {};
	struct zw_policy_key k = {};
	struct zw_policy_val *pv;
	struct zw_zpair *zp;
	__u32 slot = ZW_SLOT(gen);
	__u16 port;
	__u8 kinds;

	if (!cfg || !q || !out)
		return 0;
	zk.src_zone = q->src_zone;
	zk.dst_zone = q->dst_zone;
	k.src_zone = q->src_zone;
	k.dst_zone = q->dst_zone;
	k.proto = q->proto;
	port = q->port;

	zp = bpf_map_lookup_elem(&zw_zpairs, &zk);
	if (!zp)
		goto dflt;
	kinds = zp->kinds[slot];
	if (zw_proto_has_port(q->proto)) {
		if (kinds & ZW_ZPK_PORT) {
			k.kind = ZW_KIND_PORT;
			k.port = port;
			pv = bpf_map_lookup_elem(&zw_policy, &k);
			if (pv && pv->slot[slot].rule_id != ZW_RULE_NONE)
				goto hit;
		}
		if (kinds & ZW_ZPK_BLOCK) {
			k.kind = ZW_KIND_BLOCK;
			k.port = port >> ZW_BLOCK_SHIFT;
			pv = bpf_map_lookup_elem(&zw_policy, &k);
			if (pv && pv->slot[slot].rule_id != ZW_RULE_NONE)
				goto hit;
		}
	}
	k.kind = ZW_KIND_PROTO;
	k.port = 0;
	if (kinds & ZW_ZPK_PROTO) {
		pv = bpf_map_lookup_elem(&zw_policy, &k);
		if (pv && pv->slot[slot].rule_id != ZW_RULE_NONE)
			goto hit;
	}
	if (kinds & ZW_ZPK_ANY) {
		k.proto = ZW_PROTO_ANY;
		pv = bpf_map_lookup_elem(&zw_policy, &k);
		if (pv && pv->slot[slot].rule_id != ZW_RULE_NONE)
			goto hit;
	}
dflt:
	*out = cfg->dflt[slot][q->src_zone == q->dst_zone ? 0 : 1];
	return 0;
hit:
	*out = pv->slot[slot];
	return 0;
}

#endif
