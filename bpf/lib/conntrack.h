/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking: one LRU entry per flow, keyed by the original
 * direction's tuple; a packet finds its flow as-is (original) or reversed
 * (reply). Entries carry the generation that allowed them so an apply
 * re-judges established flows. */
#ifndef ZW_BPF_CONNTRACK_H
#define ZW_BPF_CONNTRACK_H

#include "lib/maps.h"

enum zw_ct_dir {
	ZW_CT_ORIG = 0,
	ZW_CT_REPLY = 1,
};

static __always_inline void zw_ct_reverse(const struct zw_ct_key *in, struct zw_ct_key *out)
{
	zw_copy16(out->saddr, in->daddr);
	zw_copy16(out->daddr, in->saddr);
	out->sport = in->dport;
	out->dport = in->sport;
	out->proto = in->proto;
	out->pad0[0] = 0;
	out->pad0[1] = 0;
	out->pad0[2] = 0;
}

static __always_inline __u64 zw_ct_timeout(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return ZW_CT_TIMEOUT_TCP_NS;
	case IPPROTO_UDP:
		return ZW_CT_TIMEOUT_UDP_NS;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return ZW_CT_TIMEOUT_ICMP_NS;
	default:
		return ZW_CT_TIMEOUT_OTHER_NS;
	}
}

/* Finds the live flow of a packet; *orig_key receives the flow's key.
 * An expired entry is deleted and reported as no flow. */
static __always_inline struct zw_ct_entry *
zw_ct_lookup(const struct zw_ct_key *t, struct zw_ct_key *orig_key, int *dir, __u64 now)
{
	struct zw_ct_entry *e;

	*orig_key = *t;
	*dir = ZW_CT_ORIG;
	e = bpf_map_lookup_elem(&zw_ct, orig_key);
	if (!e) {
		zw_ct_reverse(t, orig_key);
		*dir = ZW_CT_REPLY;
		e = bpf_map_lookup_elem(&zw_ct, orig_key);
		if (!e)
			return NULL;
	}
	if (now - e->last_seen_ns > zw_ct_timeout(t->proto)) {
		bpf_map_delete_elem(&zw_ct, orig_key);
		return NULL;
	}
	if (now - e->last_seen_ns > ZW_CT_REFRESH_NS)
		e->last_seen_ns = now;
	return e;
}

static __always_inline void zw_ct_create(const struct zw_ct_key *t, __u32 gen,
					 const struct zw_verdict *v, __u16 policy_port,
					 __u8 flags, __u64 now)
{
	struct zw_ct_entry e = {
		.created_ns = now,
		.last_seen_ns = now,
		.gen = gen,
		.rule_id = v->rule_id,
		.policy_port = policy_port,
		.flags = flags,
	};

	bpf_map_update_elem(&zw_ct, t, &e, BPF_ANY);
}

#endif
