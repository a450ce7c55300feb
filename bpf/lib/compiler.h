/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Small compiler helpers for the BPF side; nothing here touches maps. */
#ifndef ZW_BPF_COMPILER_H
#define ZW_BPF_COMPILER_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Subprograms called from several places: global (not static) BPF
 * functions, which the verifier checks once on their own instead of once
 * per call path (the inlined copies exceeded the 512-byte stack and
 * multiplied verification). Their pointer arguments may be NULL to the
 * verifier: each checks. */
#define ZW_SUBPROG __attribute__((noinline))

/* Sixteen address bytes, so a subprogram argument has the right size. */
struct zw_addr16 {
	__u8 b[16];
};

#define zw_likely(x) __builtin_expect(!!(x), 1)
#define zw_unlikely(x) __builtin_expect(!!(x), 0)

/* A single volatile load: the flip of active_gen is read once per packet. */
#define ZW_READ_ONCE(x) (*(volatile typeof(x) *)&(x))

static __always_inline void zw_copy16(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, 16);
}

#endif
