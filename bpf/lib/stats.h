/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The single accounting exit: every packet is counted once by reason, by
 * the rule that decided it (if any), by endpoint and by zone pair, in per-CPU
 * maps; denials and new flows become events (lib/events.h). */
#ifndef ZW_BPF_STATS_H
#define ZW_BPF_STATS_H

#include "lib/maps.h"
#include "lib/runmode.h"
#include "lib/events.h"

enum zw_hook {
	ZW_HOOK_FROM_VM = 0,	/* what the VM sends: tc ingress / XDP */
	ZW_HOOK_TO_VM = 1,	/* what the VM receives: tc egress */
};

static __always_inline int zw_reason_passes(int reason)
{
	return reason < ZW_R_FIRST_DROP;
}

static __always_inline void zw_count(struct zw_counter *c, __u32 len)
{
	c->packets++;
	c->bytes += len;
}

/* The counter slot of a zone pair, handed out on first use (ABI header);
 * ZW_ZP_NONE for packets without both zones, or in a dry run. A global
 * subprogram: its frame is not on the callers' (the stack is tight). */
ZW_SUBPROG __u32 zw_zp_slot(__u32 src_zone, __u32 dst_zone)
{
	struct zw_zp_stats_key k = { .src_zone = src_zone, .dst_zone = dst_zone };
	struct zw_zp_alloc *al;
	__u32 zero = 0, slot, *s;

	if (!src_zone || !dst_zone || zw_dry())
		return ZW_ZP_NONE;
	s = bpf_map_lookup_elem(&zw_zp_index, &k);
	if (s)
		return *s;
	al = bpf_map_lookup_elem(&zw_zp_alloc, &zero);
	if (!al)
		return ZW_ZP_NONE;
	/* A slot is taken by inserting it into zw_zp_claim (BPF_NOEXIST is the
	 * lock: two CPUs never take the same one); `next` is only a hint. */
	slot = ZW_ZP_OTHER;
	for (int i = 0; i < 4; i++) {
		__u32 c = al->next + 1 + i;

		if (c >= ZW_MAX_ZP_STATS)
			break;
		if (bpf_map_update_elem(&zw_zp_claim, &c, &k, BPF_NOEXIST) == 0) {
			slot = c;
			al->next = c;
			break;
		}
	}
	if (bpf_map_update_elem(&zw_zp_index, &k, &slot, BPF_NOEXIST) == 0)
		return slot;
	s = bpf_map_lookup_elem(&zw_zp_index, &k);	/* another CPU was first */
	return s ? *s : ZW_ZP_OTHER;
}

/* Packets of a flow whose zones are known count on the flow's zone pair:
 * established packets through the slot their flow keeps (an array lookup),
 * the others through the pair's index. */
static __always_inline void zw_count_zpair(const struct zw_acct *a, int reason, int pass,
					   __u32 len)
{
	struct zw_zp_stats *zs;
	__u32 slot = a->zp_slot;

	if (slot == ZW_ZP_NONE)
		slot = zw_zp_slot(a->src_zone, a->dst_zone);
	if (slot == ZW_ZP_NONE)
		return;
	zs = bpf_map_lookup_elem(&zw_st_zpair, &slot);
	if (!zs)
		return;
	if (reason == ZW_R_PASS_AUDIT)
		zw_count(&zs->audit, len);
	else
		zw_count(pass ? &zs->pass : &zs->drop, len);
}

/* Counts one packet: by reason, by rule, by endpoint, by zone pair; now 0:
 * the rule's last hit is left as it is. */
static __always_inline void zw_count_packet(int reason, int pass, __u32 rule_id, __s64 ep_id,
					    int hook, __u32 len, __u64 now, const struct zw_acct *a)
{
	__u32 r = reason;
	struct zw_counter *c;

	c = bpf_map_lookup_elem(&zw_st_reason, &r);
	if (c)
		zw_count(c, len);
	if (rule_id != ZW_RULE_NONE) {
		struct zw_rule_stats *rs = bpf_map_lookup_elem(&zw_st_rule, &rule_id);

		if (rs) {
			rs->packets++;
			rs->bytes += len;
			if (now)
				rs->last_hit_ns = now;
			if (reason == ZW_R_PASS_AUDIT)
				rs->audit_packets++;
		}
	}
	if (ep_id >= 0) {
		__u32 id = ep_id;
		struct zw_ep_stats *es = bpf_map_lookup_elem(&zw_st_ep, &id);

		if (es) {
			if (hook == ZW_HOOK_FROM_VM)
				zw_count(pass ? &es->from_vm_pass : &es->from_vm_drop, len);
			else
				zw_count(pass ? &es->to_vm_pass : &es->to_vm_drop, len);
		}
	}
	zw_count_zpair(a, reason, pass, len);
}

/* Returns 1 to pass, 0 to drop; ZW_RUN_VERDICT: the encoded verdict
 * (entry points hand it out through zw_ret). ZW_RUN_DRY counts nothing. */
static __always_inline int zw_account(int reason, __u32 rule_id, __s64 ep_id, int hook,
				      __u32 len, __u64 now, const struct zw_pkt *p,
				      const struct zw_acct *a, const struct zw_config *cfg)
{
	int pass = zw_reason_passes(reason);

	if (zw_verdict_mode() && zw_dry())
		return ZW_VERDICT_ENCODE(rule_id, reason);
	if (zw_dry())
		return pass;
	zw_count_packet(reason, pass, rule_id, ep_id, hook, len, now, a);
	if (zw_ev_wanted(reason, a->vflags))
		zw_emit(reason, rule_id, zw_ev_slot(ep_id), hook, len, now, p, a, cfg);
	if (zw_verdict_mode())
		return ZW_VERDICT_ENCODE(rule_id, reason);
	return pass;
}

/* An established packet the flow cache passed: counted like any other, but
 * the rule's last hit stays the time of the conntrack hit that filled the
 * cache entry, less than ZW_FC_VALID_JIFFIES ago (no clock read); no event
 * (established passes never make one). */
static __always_inline int zw_account_cached(int reason, __u32 rule_id, __s64 ep_id, int hook,
					     __u32 len, const struct zw_acct *a)
{
	if (!zw_dry())
		zw_count_packet(reason, 1, rule_id, ep_id, hook, len, 0, a);
	if (zw_verdict_mode())
		return ZW_VERDICT_ENCODE(rule_id, reason);
	return 1;
}

/* The program's return for an accounted packet: the action, or in
 * ZW_RUN_VERDICT the encoded verdict as is. */
static __always_inline int zw_ret(int accounted, int pass_act, int drop_act)
{
	if (zw_verdict_mode())
		return accounted;
	return accounted ? pass_act : drop_act;
}

#endif
