/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking: one hash entry per flow, keyed by the original
 * direction's tuple; a packet finds its flow as-is (original) or reversed
 * (reply). Entries carry the generation that allowed them so an apply
 * re-judges established flows, and the endpoint charged for them (per-VM
 * limits; see the ABI header). */
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

static __always_inline void zw_ct_charge(__u32 owner, __s32 delta)
{
	struct zw_ct_usage *u = bpf_map_lookup_elem(&zw_ct_count, &owner);

	if (u)
		__sync_fetch_and_add(&u->flows, delta);
}

/* Deletes a flow and uncharges its owner, once: only the caller whose
 * delete succeeded does (another CPU or the sweep may race it). */
static __always_inline void zw_ct_delete(const struct zw_ct_key *k, const struct zw_ct_entry *e)
{
	__u32 owner = e->owner;
	__u8 flags = e->flags;

	if (bpf_map_delete_elem(&zw_ct, k) == 0 && (flags & ZW_CTF_OWNED))
		zw_ct_charge(owner, -1);
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
	if (now - e->last_seen_ns > zw_ct_timeout_ns(t->proto)) {
		zw_ct_delete(orig_key, e);
		return NULL;
	}
	if (now - e->last_seen_ns > ZW_CT_REFRESH_NS)
		e->last_seen_ns = now;
	return e;
}

/* Tracks a new flow charged to endpoint `owner`. Returns ZW_OK, or the
 * reason the flow is refused: the endpoint is at its limit (checked before
 * the insert: concurrent CPUs may overshoot it by one flow each), or the
 * table is full. A flow another CPU created meanwhile is fine. */
static __always_inline int zw_ct_create(const struct zw_ct_key *t, __u32 gen,
					const struct zw_verdict *v, __u16 policy_port,
					__u8 flags, __u64 now, __u32 owner, __u32 limit)
{
	struct zw_ct_entry e = {
		.created_ns = now,
		.last_seen_ns = now,
		.gen = gen,
		.rule_id = v->rule_id,
		.policy_port = policy_port,
		.flags = flags | ZW_CTF_OWNED,
		.owner = owner,
	};
	struct zw_ct_usage *u = bpf_map_lookup_elem(&zw_ct_count, &owner);
	long err;

	if (!u)
		return ZW_R_DROP_CT_LIMIT;
	if (u->flows >= limit)
		return ZW_R_DROP_CT_LIMIT;
	err = bpf_map_update_elem(&zw_ct, t, &e, BPF_NOEXIST);
	if (err == 0) {
		__sync_fetch_and_add(&u->flows, 1);
		return ZW_OK;
	}
	return err == -17 /* EEXIST */ ? ZW_OK : ZW_R_DROP_CT_FULL;
}

#endif
