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

static const volatile struct zw_zp_stats zw_zp_zero;

/* Packets of a flow whose zones are known count on the flow's zone pair. */
static __always_inline void zw_count_zpair(const struct zw_acct *a, int reason, int pass,
					   __u32 len)
{
	struct zw_zp_stats_key k = { .src_zone = a->src_zone, .dst_zone = a->dst_zone };
	struct zw_zp_stats *zs;

	if (!a->src_zone || !a->dst_zone)
		return;
	zs = bpf_map_lookup_elem(&zw_st_zpair, &k);
	if (!zs) {
		/* From .rodata, not the stack: the combined stack is tight. */
		bpf_map_update_elem(&zw_st_zpair, &k, (const void *)&zw_zp_zero, BPF_NOEXIST);
		zs = bpf_map_lookup_elem(&zw_st_zpair, &k);
		if (!zs)
			return;	/* ZW_MAX_ZP_STATS reached */
	}
	if (reason == ZW_R_PASS_AUDIT)
		zw_count(&zs->audit, len);
	else
		zw_count(pass ? &zs->pass : &zs->drop, len);
}

/* Returns 1 to pass, 0 to drop; ZW_RUN_VERDICT: the encoded verdict
 * (entry points hand it out through zw_ret). ZW_RUN_DRY counts nothing. */
static __always_inline int zw_account(int reason, __u32 rule_id, __s64 ep_id, int hook,
				      __u32 len, __u64 now, const struct zw_acct *a)
{
	__u32 r = reason;
	struct zw_counter *c;
	int pass = zw_reason_passes(reason);

	if (zw_verdict_mode() && zw_dry())
		return ZW_VERDICT_ENCODE(rule_id, reason);
	if (zw_dry())
		return pass;
	c = bpf_map_lookup_elem(&zw_st_reason, &r);
	if (c)
		zw_count(c, len);
	if (rule_id != ZW_RULE_NONE) {
		struct zw_rule_stats *rs = bpf_map_lookup_elem(&zw_st_rule, &rule_id);

		if (rs) {
			rs->packets++;
			rs->bytes += len;
			rs->last_hit_ns = now;
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
	if (zw_ev_wanted(reason, a->vflags))
		zw_emit(reason, rule_id, ep_id >= 0 && ep_id < ZW_MAX_ENDPOINTS ? ep_id : ZW_EV_SLOT_NONE,
			hook, len, now, a);
	if (zw_verdict_mode())
		return ZW_VERDICT_ENCODE(rule_id, reason);
	return pass;
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
