/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Load-time knobs (rodata, set between open and load): a mode that is off
 * is a constant the verifier prunes, so production pays nothing for the
 * dry-run/verdict variant that `trace` and `test` load (ZW_RUN_* in the ABI
 * header). */
#ifndef ZW_BPF_RUNMODE_H
#define ZW_BPF_RUNMODE_H

#include <linux/types.h>
#include "zonewall/abi/zonewall.h"

const volatile __u32 zw_cfg_run_mode = 0;

/* No side effects: no conntrack writes, no counters, no events. */
static __always_inline int zw_dry(void)
{
	return zw_cfg_run_mode & ZW_RUN_DRY;
}

/* Return ZW_VERDICT_ENCODE(rule, reason) instead of pass/drop. */
static __always_inline int zw_verdict_mode(void)
{
	return zw_cfg_run_mode & ZW_RUN_VERDICT;
}

#endif
