/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Flow and deny events: one struct zw_event per denied packet and per new
 * flow (as the verdict's ZW_VF_LOG asks), written to the zw_events ring
 * buffer from the accounting exit. A token bucket per endpoint keeps one
 * noisy VM from drowning the others or the reader; what it holds back is
 * counted as suppressed, what a full ring buffer refuses as lost. */
#ifndef ZW_BPF_EVENTS_H
#define ZW_BPF_EVENTS_H

#include "lib/compiler.h"
#include "lib/maps.h"
#include "lib/parse.h"

#define ZW_EV_TOKEN		1000000000ULL	/* one event, in bucket units */
#define ZW_EV_MAX_IDLE_NS	(10ULL * 1000000000ULL)	/* refill cap: no overflow */

/* What the accounting exit knows about a packet besides the packet and its
 * counters; also the slow path's in/out block (zw_slow): one struct on the
 * entry's stack, not two (the combined stack is tight). */
struct zw_acct {
	__u64 now;		/* in */
	__u32 gen;		/* in */
	__u32 ifindex;		/* in */
	__u32 from_vm;		/* in */
	__u16 no_flow;		/* in: the fast path looked: the packet has no flow */
	__u8 vflags;		/* out: ZW_VF_* of the deciding verdict, 0 if none */
	__u8 pad0;
	__u32 rule;		/* out */
	__u16 src_zone;		/* out: the flow's zones, ZW_ZONE_NONE if not judged */
	__u16 dst_zone;		/* out */
	__u32 zp_slot;		/* out: their counter slot if known, else ZW_ZP_NONE */
	__u32 born;		/* in: zw_ct_born of the tuple, read before the fast path's lookup */
};

/* Policy decisions are reported as the verdict says (ZW_VF_LOG: denies and
 * audits for a deny verdict, new flows for an allow); every other drop
 * (malformed, spoofed, no endpoint, ...) always is. */
static __always_inline int zw_ev_wanted(int reason, __u8 vflags)
{
	switch (reason) {
	case ZW_R_PASS_NEW:
	case ZW_R_PASS_AUDIT:
	case ZW_R_DROP_POLICY:
	case ZW_R_DROP_REVOKED:
		return vflags & ZW_VF_LOG;
	default:
		return reason >= ZW_R_FIRST_DROP;
	}
}

/* Takes one token from the slot's bucket; 0 when it is empty. cfg: the
 * entry's zw_config value (NULL: the default rate and burst). */
static __always_inline int zw_ev_take(__u32 slot, __u64 now, const struct zw_config *cfg)
{
	struct zw_ev_bucket *b = bpf_map_lookup_elem(&zw_ev_bucket, &slot);
	__u64 rate = ZW_EV_RATE_DEFAULT, burst = ZW_EV_BURST_DEFAULT;
	__u64 last, elapsed = 0, tokens;

	if (!b)
		return 0;
	if (cfg) {
		__u32 r = ZW_READ_ONCE(cfg->ev_rate), d = ZW_READ_ONCE(cfg->ev_burst);

		if (r)
			rate = r;
		if (d)
			burst = d;
	}
	if (rate > ZW_EV_RATE_MAX)
		rate = ZW_EV_RATE_MAX;
	if (burst > ZW_EV_RATE_MAX)
		burst = ZW_EV_RATE_MAX;
	last = b->last_ns;
	if (now > last)
		elapsed = now - last;
	if (elapsed > ZW_EV_MAX_IDLE_NS)
		elapsed = ZW_EV_MAX_IDLE_NS;
	tokens = b->tokens + elapsed * rate;
	/* Not even one token: the bucket is left as it is (no write to a line
	 * every CPU of a flooding VM shares). The same as writing it: tokens
	 * is below the burst (not capped), and elapsed reaches one token's
	 * worth (at most 1 s) long before its 10 s cap; a new rate counts from
	 * the last write instead of from this packet. */
	if (tokens < ZW_EV_TOKEN)
		return 0;
	if (tokens > burst * ZW_EV_TOKEN)
		tokens = burst * ZW_EV_TOKEN;
	b->last_ns = now;
	b->tokens = tokens - ZW_EV_TOKEN;
	return 1;
}

/* The event budget of an endpoint slot: its per-CPU event stats when a
 * token was taken (an event is to be written), NULL when the bucket is
 * empty (counted as suppressed). */
static __always_inline struct zw_ev_stats *zw_ev_admit(__u32 slot, __u64 now,
						       const struct zw_config *cfg)
{
	struct zw_ev_stats *st = bpf_map_lookup_elem(&zw_st_ev, &slot);

	if (!st)
		return NULL;
	if (!zw_ev_take(slot, now, cfg)) {
		st->suppressed++;
		return NULL;
	}
	return st;
}

/* Writes the event of an admitted packet (a full ring buffer: lost). */
static __always_inline void zw_ev_write(struct zw_ev_stats *st, int reason, __u32 rule_id,
					__u32 slot, int hook, __u32 len, __u64 now,
					const struct zw_pkt *p, const struct zw_acct *a)
{
	struct zw_event *e = bpf_ringbuf_reserve(&zw_events, sizeof(*e), 0);

	if (!e) {
		st->lost++;
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = now;
	if (p->l3 == ZW_L3_ARP) {
		zw_map_v4(e->saddr, p->arp_spa);
		e->flags = ZW_EVF_ARP;
	} else {
		zw_copy16_w(e->saddr, p->tuple.saddr);
		zw_copy16_w(e->daddr, p->tuple.daddr);
		e->sport = p->tuple.sport;
		e->dport = p->tuple.dport;
		e->proto = p->tuple.proto;
		e->icmp_type = p->icmp_type;
	}
	e->ifindex = a->ifindex;
	e->ep_id = slot;
	e->rule_id = rule_id;
	e->len = len;
	e->gen = a->gen;
	e->src_zone = a->src_zone;
	e->dst_zone = a->dst_zone;
	e->hook = hook;
	e->reason = reason;
	bpf_ringbuf_submit(e, 0);
	st->emitted++;
}

/* The event slot of an endpoint id (ZW_EV_SLOT_NONE: no endpoint). */
static __always_inline __u32 zw_ev_slot(__s64 ep_id)
{
	return ep_id >= 0 && ep_id < ZW_MAX_ENDPOINTS ? ep_id : ZW_EV_SLOT_NONE;
}

static __always_inline void zw_emit(int reason, __u32 rule_id, __u32 slot, int hook, __u32 len,
				    __u64 now, const struct zw_pkt *p, const struct zw_acct *a,
				    const struct zw_config *cfg)
{
	struct zw_ev_stats *st = zw_ev_admit(slot, now, cfg);

	if (st)
		zw_ev_write(st, reason, rule_id, slot, hook, len, now, p, a);
}

#endif
