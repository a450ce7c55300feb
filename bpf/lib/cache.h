/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-CPU direct-mapped caches of the fast path (why each is exact: the
 * ABI header): the flow cache (zw_flow_cache_ent), the established fast
 * path's recent answers, and the denied-packet cache (zw_deny_cache_ent).
 * A hit is an array lookup and a few word compares instead of a hash map
 * lookup (jhash over a 40-byte key, a bucket walk, a key compare); filling
 * a slot is a few stores instead of a hash map insert. */
#ifndef ZW_BPF_CACHE_H
#define ZW_BPF_CACHE_H

#include "lib/compiler.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/runmode.h"
#include "lib/stats.h"
#include "lib/antispoof.h"
#include "lib/conntrack.h"

#define ZW_FC_MUL 0x9E3779B97F4A7C15ULL	/* 2^64 / golden ratio */

/* Which packets may fill it: the ones zw_frame_cached asks it for, TCP
 * segments without SYN, FIN or RST and UDP (ICMP's echo direction is checked
 * per packet). */
static __always_inline int zw_fc_eligible(const struct zw_pkt *p)
{
	__u8 proto = p->tuple.proto;

	if (proto == IPPROTO_TCP)
		return !(p->tcp_flags & 0x07);
	return proto == IPPROTO_UDP;
}

/* A 12-bit slot from the four address words and a fifth word. Not a
 * secret hash: a guest choosing tuples that collide only evicts entries of
 * its own CPU. */
static __always_inline __u32 zw_cache_slot(__u64 s0, __u64 s1, __u64 d0, __u64 d1, __u64 w4)
{
	__u64 h = (s0 ^ s1) + (d0 ^ d1) * ZW_FC_MUL;

	h = (h ^ w4) * ZW_FC_MUL;
	return h >> (64 - 12);
}

static __always_inline __u64 zw_fc_w4(__u64 tuple_w4, __u32 ifindex, __u32 hook)
{
	return tuple_w4 ^ ((__u64)ifindex << 33) ^ hook;
}

/* The packet's slot on this CPU (never NULL for a valid index, but the
 * verifier wants the check). Tuple words: the key is 8-byte aligned with
 * zeroed padding (zw_parse). */
static __always_inline struct zw_flow_cache_ent *zw_fc_slot(const struct zw_ct_key *t,
							    __u32 ifindex, __u32 hook)
{
	const __u64 *w = (const __u64 *)t;
	__u32 slot = zw_cache_slot(w[0], w[1], w[2], w[3], zw_fc_w4(w[4], ifindex, hook));

	ZW_STATIC_ASSERT(ZW_FLOW_CACHE_SLOTS == 1 << 12, "slot bits");
	return bpf_map_lookup_elem(&zw_flow_cache, &slot);
}

/* The last word of a zw_deny_key (interface, policy port, protocol, hook)
 * as it lies in memory, in registers (zw_ct_key_w4: no union). */
static __always_inline __u64 zw_deny_w4_of(__u32 ifindex, __u16 port, __u8 proto, __u32 hook)
{
	ZW_STATIC_ASSERT(sizeof(struct zw_deny_key) == 40, "deny key words");
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (__u64)ifindex | ((__u64)port << 32) | ((__u64)proto << 48) | ((__u64)(__u8)hook << 56);
#else
	return ((__u64)ifindex << 32) | ((__u64)port << 16) | ((__u64)proto << 8) | (__u8)hook;
#endif
}

static __always_inline __u64 zw_deny_w4(const struct zw_pkt *p, __u32 ifindex, __u32 hook)
{
	return zw_deny_w4_of(ifindex, p->policy_port, p->tuple.proto, hook);
}

static __always_inline struct zw_deny_cache_ent *zw_deny_slot(const struct zw_pkt *p, __u64 w4)
{
	const __u64 *t = (const __u64 *)&p->tuple;
	__u32 slot = zw_cache_slot(t[0], t[1], t[2], t[3], w4);

	ZW_STATIC_ASSERT(ZW_DENY_CACHE_SLOTS == 1 << 12, "slot bits");
	return bpf_map_lookup_elem(&zw_deny_cache, &slot);
}

/* The caches asked straight from the frame, before the packet is parsed,
 * for TCP and UDP but DHCP over IPv4 without options and not fragmented or
 * IPv6 without extension headers, to a unicast address, from the VM's own
 * MAC when it is checked: exactly the packets zw_parse marks for the fast
 * path, with the same tuple. The flow cache answers for TCP segments without
 * SYN, FIN or RST and UDP (zw_fc_eligible); the denied-packet cache, for a
 * pure SYN and UDP, when the entry is for the same tuple, source port
 * included, and no flow was created in its zw_ct_born bucket since it was
 * judged: what the fast path would answer after its conntrack lookup (no
 * flow) and its own look into the denied-packet cache. Returns the reason
 * (io: rule, zones, counter slot, verdict flags), or ZW_OK: the full path
 * judges the packet as it would anyway. The tuple's words stay in
 * registers: no stack, no stores read back. */
static __always_inline int zw_frame_cached(void *data, void *data_end, const struct zw_endpoint *ep,
					   __u32 hook, struct zw_acct *io, const struct zw_config *cfg)
{
	__u32 ifindex = io->ifindex, gen = io->gen;
	__u64 jiffies = bpf_jiffies64();
	const struct zw_flow_cache_ent *e;
	const struct zw_deny_cache_ent *de;
	__u8 *d = data, *l4, proto, flags = 0;
	__u64 s0, s1, d0, d1, w4, dw4;
	__be16 sport, dport;
	__u32 slot;

	if ((void *)(d + 14) > data_end)
		return ZW_OK;
	if (hook == ZW_HOOK_FROM_VM && (ep->flags & ZW_EPF_CHECK_MAC) && !zw_mac_eq(d + 6, ep->mac))
		return ZW_OK;
	if (*(__be16 *)(d + 12) == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(d + 14);

		if ((void *)(ip + 1) > data_end)
			return ZW_OK;
		if (*(__u8 *)ip != 0x45 || (ip->frag_off & bpf_htons(ZW_IP_MF | ZW_IP_OFFSET)) ||
		    ((__u8 *)&ip->daddr)[0] >= 224)
			return ZW_OK;
		proto = ip->protocol;
		s0 = 0;
		s1 = zw_v4_word(ip->saddr);
		d0 = 0;
		d1 = zw_v4_word(ip->daddr);
		l4 = (void *)(ip + 1);
	} else if (*(__be16 *)(d + 12) == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(d + 14);

		if ((void *)(ip6 + 1) > data_end)
			return ZW_OK;
		if ((*(__u8 *)ip6 >> 4) != 6 || zw_is_v4_mapped((__u8 *)&ip6->saddr) ||
		    zw_is_v4_mapped((__u8 *)&ip6->daddr) || ((__u8 *)&ip6->daddr)[0] == 0xff)
			return ZW_OK;
		proto = ip6->nexthdr;
		s0 = ((__u64 *)&ip6->saddr)[0];
		s1 = ((__u64 *)&ip6->saddr)[1];
		d0 = ((__u64 *)&ip6->daddr)[0];
		d1 = ((__u64 *)&ip6->daddr)[1];
		l4 = (void *)(ip6 + 1);
	} else {
		return ZW_OK;
	}
	if (proto == IPPROTO_TCP) {
		if ((void *)(l4 + 20) > data_end)
			return ZW_OK;
		flags = l4[13];
	} else if (proto != IPPROTO_UDP || (void *)(l4 + 8) > data_end) {
		return ZW_OK;
	}
	sport = *(__be16 *)l4;
	dport = *(__be16 *)(l4 + 2);
	if (proto == IPPROTO_UDP && zw_is_dhcp_port(sport, dport))
		return ZW_OK;
	w4 = zw_ct_key_w4(sport, dport, proto);

	if (!(flags & 0x07)) {
		slot = zw_cache_slot(s0, s1, d0, d1, zw_fc_w4(w4, ifindex, hook));
		e = bpf_map_lookup_elem(&zw_flow_cache, &slot);
		if (e && e->gen == gen && e->ifindex == ifindex && e->hook == hook &&
		    e->ct_epoch == ZW_READ_ONCE(cfg->ct_epoch) &&
		    ((const __u64 *)&e->tuple)[0] == s0 && ((const __u64 *)&e->tuple)[1] == s1 &&
		    ((const __u64 *)&e->tuple)[2] == d0 && ((const __u64 *)&e->tuple)[3] == d1 &&
		    ((const __u64 *)&e->tuple)[4] == w4 &&
		    jiffies - e->checked_jiffies < ZW_FC_VALID_JIFFIES) {
			io->rule = e->rule_id;
			io->src_zone = e->src_zone;
			io->dst_zone = e->dst_zone;
			io->zp_slot = e->zp_slot;
			return e->reason;
		}
	}
	if (proto == IPPROTO_TCP && (flags & 0x12) != 0x02)
		return ZW_OK;
	dw4 = zw_deny_w4_of(ifindex, bpf_ntohs(dport), proto, hook);
	slot = zw_cache_slot(s0, s1, d0, d1, dw4);
	de = bpf_map_lookup_elem(&zw_deny_cache, &slot);
	if (!de || de->val.gen != gen || !de->val.born_ok || de->val.sport != sport ||
	    ((const __u64 *)&de->key)[0] != s0 || ((const __u64 *)&de->key)[1] != s1 ||
	    ((const __u64 *)&de->key)[2] != d0 || ((const __u64 *)&de->key)[3] != d1 ||
	    ((const __u64 *)&de->key)[4] != dw4)
		return ZW_OK;
	if (zw_ctb_born(zw_born_read(zw_born_slot(s0, s1, d0, d1, sport, dport, proto))) != de->val.born)
		return ZW_OK;
	io->rule = de->val.rule_id;
	io->src_zone = de->val.src_zone;
	io->dst_zone = de->val.dst_zone;
	io->zp_slot = de->val.zp_slot;
	io->vflags = de->val.vflags;
	return ZW_R_DROP_POLICY;
}

/* Remembers a fast-path pass that conntrack just gave (ct: the entry;
 * epoch: zw_config.ct_epoch as read before that lookup). */
static __always_inline void zw_fc_fill(struct zw_flow_cache_ent *e, const struct zw_ct_key *t,
				       __u32 ifindex, __u32 hook, __u32 gen, __u32 epoch,
				       const struct zw_ct_entry *ct, __u8 reason)
{
	if (zw_dry())
		return;
	zw_copy16_w(e->tuple.saddr, t->saddr);
	zw_copy16_w(e->tuple.daddr, t->daddr);
	((__u64 *)&e->tuple)[4] = ((const __u64 *)t)[4];
	e->ifindex = ifindex;
	e->gen = gen;
	e->checked_jiffies = bpf_jiffies64();
	e->ct_epoch = epoch;
	e->rule_id = ct->rule_id;
	e->zp_slot = ct->zp_slot;
	e->src_zone = ct->src_zone;
	e->dst_zone = ct->dst_zone;
	e->hook = hook;
	e->reason = reason;
}

/* A packet without a flow that the policy denied before, in generation
 * gen: the remembered verdict, or NULL to judge it. */
static __always_inline const struct zw_deny_val *zw_deny_cached(const struct zw_pkt *p,
								__u32 ifindex, __u32 hook,
								__u32 gen)
{
	__u64 w4 = zw_deny_w4(p, ifindex, hook);
	struct zw_deny_cache_ent *e = zw_deny_slot(p, w4);
	const __u64 *k, *t = (const __u64 *)&p->tuple;

	if (!e)
		return NULL;
	k = (const __u64 *)&e->key;
	if (e->val.gen != gen || k[0] != t[0] || k[1] != t[1] || k[2] != t[2] || k[3] != t[3] ||
	    k[4] != w4)
		return NULL;
	return &e->val;
}

/* Remembers a policy denial of a packet without a flow (the slow path's
 * outcome). A global subprogram: off the fast path's stack. */
ZW_SUBPROG int zw_deny_remember(const struct zw_pkt *p, const struct zw_acct *io, __u32 hook)
{
	struct zw_deny_cache_ent *e;
	__u64 w4, *k;
	const __u64 *t;

	if (!p || !io || zw_dry())
		return 0;
	w4 = zw_deny_w4(p, io->ifindex, hook);
	e = zw_deny_slot(p, w4);
	if (!e)
		return 0;
	t = (const __u64 *)&p->tuple;
	k = (__u64 *)&e->key;
	k[0] = t[0];
	k[1] = t[1];
	k[2] = t[2];
	k[3] = t[3];
	k[4] = w4;
	e->val.gen = io->gen;
	e->val.rule_id = io->rule;
	e->val.src_zone = io->src_zone;
	e->val.dst_zone = io->dst_zone;
	e->val.zp_slot = zw_zp_slot(io->src_zone, io->dst_zone);
	e->val.vflags = io->vflags;
	e->val.born_ok = p->tuple.proto == IPPROTO_TCP || p->tuple.proto == IPPROTO_UDP;
	e->val.sport = p->tuple.sport;
	e->val.born = io->born;
	return 0;
}

#endif
