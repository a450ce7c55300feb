/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Small compiler helpers for the BPF side; nothing here touches maps. */
#ifndef ZW_BPF_COMPILER_H
#define ZW_BPF_COMPILER_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Subprograms called from several places: one copy, its own stack frame
 * (the combined BPF stack of all inlined copies would exceed 512 bytes). */
#ifndef __noinline
#define __noinline __attribute__((noinline))
#endif

#define zw_likely(x) __builtin_expect(!!(x), 1)
#define zw_unlikely(x) __builtin_expect(!!(x), 0)

/* A single volatile load: the flip of active_gen is read once per packet. */
#define ZW_READ_ONCE(x) (*(volatile typeof(x) *)&(x))

static __always_inline void zw_copy16(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, 16);
}

#endif
