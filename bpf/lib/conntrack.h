/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking: one hash entry per flow under a canonical key, so
 * one lookup finds a packet's flow in either direction. Entries carry the
 * generation that allowed them so an apply re-judges established flows, the
 * endpoint charged for them (per-VM limits) and the interfaces of both ends
 * (the established fast path); see the ABI header. */
#ifndef ZW_BPF_CONNTRACK_H
#define ZW_BPF_CONNTRACK_H

#include "lib/maps.h"
#include "lib/runmode.h"
#include "lib/compiler.h"

enum zw_ct_dir {
	ZW_CT_ORIG = 0,
	ZW_CT_REPLY = 1,
};

/* in and out may be the same key: everything is read before it is written. */
static __always_inline void zw_ct_reverse(const struct zw_ct_key *in, struct zw_ct_key *out)
{
	const __u64 *i = (const __u64 *)in;
	__u64 s0 = i[0], s1 = i[1], d0 = i[2], d1 = i[3];
	__be16 sport = in->sport, dport = in->dport;
	__u8 proto = in->proto;
	__u64 *o = (__u64 *)out;

	o[0] = d0;
	o[1] = d1;
	o[2] = s0;
	o[3] = s1;
	o[4] = zw_ct_key_w4(dport, sport, proto);
}

static __always_inline void zw_ct_charge(__u32 owner, __s32 delta)
{
	struct zw_ct_usage *u = bpf_map_lookup_elem(&zw_ct_count, &owner);

	if (u)
		__sync_fetch_and_add(&u->flows, delta);
}

static __always_inline __u32 zw_born_slot_of(const struct zw_ct_key *t)
{
	const __u64 *w = (const __u64 *)t;

	ZW_STATIC_ASSERT(ZW_CT_BORN_SLOTS == 1 << 16, "born slot bits");
	return zw_born_slot(w[0], w[1], w[2], w[3], t->sport, t->dport, t->proto);
}

/* The births and live flows of a bucket (one word, zw_ctb_born and
 * zw_ctb_live), read before a conntrack lookup whose miss they vouch for:
 * the lookup's loads must not pass it. x86 keeps loads in order; elsewhere
 * an atomic (a full barrier) reads it. */
static __always_inline __u64 zw_born_read(__u32 slot)
{
	__u64 *b = bpf_map_lookup_elem(&zw_ct_born, &slot);

	if (!b)
		return ZW_CTB_ONE_FLOW;	/* never: a live flow, so look */
#if defined(__TARGET_ARCH_x86)
	return *(volatile __u64 *)b;
#else
	return __sync_fetch_and_add(b, 0);
#endif
}

/* One flow of the key's bucket less, after its delete succeeded. */
static __always_inline void zw_born_release(const struct zw_ct_key *k)
{
	__u32 slot = zw_born_slot_of(k);
	__u64 *b = bpf_map_lookup_elem(&zw_ct_born, &slot);

	if (b)
		__sync_fetch_and_add(b, -1LL);
}

/* Deletes a flow and uncharges its owner, once: only the caller whose
 * delete succeeded does (another CPU or the sweep may race it). */
static __always_inline void zw_ct_delete(const struct zw_ct_key *k, const struct zw_ct_entry *e)
{
	__u32 owner = e->owner;
	__u8 flags = e->flags;

	if (zw_dry())
		return;
	if (bpf_map_delete_elem(&zw_ct, k) != 0)
		return;
	zw_born_release(k);
	if (flags & ZW_CTF_OWNED)
		zw_ct_charge(owner, -1);
}

/* The canonical key of a tuple (both 8-byte aligned: word access; t and k
 * may be the same key): the (address, port) side that compares lower
 * first. Returns 1 if the tuple had to be reversed. Any total order does,
 * as long as every user agrees: this is the only place it is made. */
static __always_inline int zw_ct_canon(const struct zw_ct_key *t, struct zw_ct_key *k)
{
	__u64 s0, s1, d0, d1;
	int swap;

	s0 = ((const __u64 *)t->saddr)[0];
	s1 = ((const __u64 *)t->saddr)[1];
	d0 = ((const __u64 *)t->daddr)[0];
	d1 = ((const __u64 *)t->daddr)[1];
	swap = s0 > d0 || (s0 == d0 && (s1 > d1 || (s1 == d1 && t->sport > t->dport)));
	if (swap) {
		zw_ct_reverse(t, k);
	} else {
		*k = *t;
		k->pad0[0] = 0;
		k->pad0[1] = 0;
		k->pad0[2] = 0;
	}
	return swap;
}

/* Finds the live flow of a packet; *key receives the flow's (canonical)
 * key, *dir whether the packet goes the way the flow's first packet went.
 * An expired entry is deleted and reported as no flow. */
static __always_inline struct zw_ct_entry *
zw_ct_lookup(const struct zw_ct_key *t, struct zw_ct_key *key, int *dir, __u64 now)
{
	struct zw_ct_entry *e;
	int swapped = zw_ct_canon(t, key);

	e = bpf_map_lookup_elem(&zw_ct, key);
	if (!e)
		return NULL;
	*dir = swapped == !!(e->flags & ZW_CTF_SWAPPED) ? ZW_CT_ORIG : ZW_CT_REPLY;
	if (now - e->last_seen_ns > zw_ct_timeout_ns(t->proto, e->flags)) {
		zw_ct_delete(key, e);
		return NULL;
	}
	if (!zw_dry() && now - e->last_seen_ns > ZW_CT_REFRESH_NS)
		e->last_seen_ns = now;
	return e;
}

/* TCP connection state, as far as timeouts need it: a FIN or RST marks the
 * flow closing/closed (short timeout); a SYN on it is a new connection on
 * the same tuple and clears the marks. Only control segments get here. */
static __always_inline void zw_ct_tcp_state(struct zw_ct_entry *e, __u8 tcp_flags)
{
	__u8 f = e->flags;

	if ((tcp_flags & 0x12) == 0x02)
		f &= ~(ZW_CTF_FIN | ZW_CTF_RST);
	if (tcp_flags & 0x04)
		f |= ZW_CTF_RST;
	else if (tcp_flags & 0x01)
		f |= ZW_CTF_FIN;
	if (f != e->flags && !zw_dry())
		e->flags = f;
}

/* The interface a packet of this flow must be on to take the fast path:
 * the sender of its direction (from the VM) or the receiver (to the VM). */
static __always_inline __u32 zw_ct_side(const struct zw_ct_entry *e, int dir, int from_vm)
{
	return (dir == ZW_CT_ORIG) == !!from_vm ? e->src_if : e->dst_if;
}

/* The original direction's source and destination addresses. */
static __always_inline const __u8 *zw_ct_orig_saddr(const struct zw_ct_key *k,
						    const struct zw_ct_entry *e)
{
	return (e->flags & ZW_CTF_SWAPPED) ? k->daddr : k->saddr;
}

static __always_inline const __u8 *zw_ct_orig_daddr(const struct zw_ct_key *k,
						    const struct zw_ct_entry *e)
{
	return (e->flags & ZW_CTF_SWAPPED) ? k->saddr : k->daddr;
}

/* Tracks a new flow under canonical key k (zw_ct_canon; e: everything
 * but the OWNED flag), charged to endpoint e->owner. Returns ZW_OK, or the
 * reason the flow is refused: the endpoint is at its limit (checked before
 * the insert: concurrent CPUs may overshoot it by one flow each), or the
 * table is full. A flow another CPU created meanwhile is fine. */
ZW_SUBPROG int zw_ct_create(const struct zw_ct_key *k, struct zw_ct_entry *e, __u32 limit)
{
	struct zw_ct_usage *u;
	__u32 owner;
	long err;

	if (!k || !e)
		return ZW_R_DROP_CT_FULL;
	owner = e->owner;
	u = bpf_map_lookup_elem(&zw_ct_count, &owner);
	if (!u)
		return ZW_R_DROP_CT_LIMIT;
	if (u->flows >= limit)
		return ZW_R_DROP_CT_LIMIT;
	if (zw_dry())
		return ZW_OK;	/* the limit judged, nothing tracked */
	e->flags |= ZW_CTF_OWNED;
	err = bpf_map_update_elem(&zw_ct, k, e, BPF_NOEXIST);
	if (err == 0) {
		__u32 slot = zw_born_slot_of(k);
		__u64 *born = bpf_map_lookup_elem(&zw_ct_born, &slot);

		__sync_fetch_and_add(&u->flows, 1);
		/* After the insert, with a full barrier: a reader whose
		 * births or live flows include this one also finds the flow. */
		if (born)
			__sync_fetch_and_add(born, ZW_CTB_ONE_FLOW);
		return ZW_OK;
	}
	return err == -17 /* EEXIST */ ? ZW_OK : ZW_R_DROP_CT_FULL;
}

#endif
