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

/* The same as two 64-bit words. clang turns a memcpy it cannot prove
 * aligned (any pointer argument) into sixteen byte loads and stores; this
 * is one load and one store per half. Stack memory on either side must be
 * 8-byte aligned (the verifier refuses a misaligned stack access at load);
 * packet and map memory need not be (x86-64 and arm64 load unaligned
 * words, and the verifier checks their alignment only where they do not). */
static __always_inline void zw_copy16_w(void *dst, const void *src)
{
	((__u64 *)dst)[0] = ((const __u64 *)src)[0];
	((__u64 *)dst)[1] = ((const __u64 *)src)[1];
}

/* Stack objects word helpers touch: 8-byte aligned. */
#define ZW_ALIGNED8 __attribute__((aligned(8)))

#endif
