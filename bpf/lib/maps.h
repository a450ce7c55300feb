/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The only place maps are defined. Layouts live in the ABI header; the
 * two-slot maps hold the union of two generations' keys during an apply
 * (ZW_GENS * per-generation capacity; entries are allocated when written). */
#ifndef ZW_BPF_MAPS_H
#define ZW_BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "zonewall/abi/zonewall.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct zw_config);
} zw_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZW_GENS * ZW_MAX_ENDPOINTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct zw_endpoint_key);
	__type(value, struct zw_endpoint_val);
} zw_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZW_GENS * ZW_MAX_ADDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct zw_addr_key);
	__type(value, struct zw_addr_val);
} zw_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, ZW_GENS * ZW_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct zw_cidr_key);
	__type(value, struct zw_addr_val);
} zw_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZW_GENS * ZW_MAX_PAIRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct zw_pair_key);
	__type(value, __u32);
} zw_pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZW_GENS * ZW_MAX_POLICY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct zw_policy_key);
	__type(value, struct zw_policy_val);
} zw_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZW_GENS * ZW_MAX_ZPAIRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct zw_zpair_key);
	__type(value, struct zw_zpair);
} zw_zpairs SEC(".maps");

/* Preallocated (no BPF_F_NO_PREALLOC): a new flow takes a ready element
 * from per-CPU free lists instead of the kernel's allocator, ~4x cheaper
 * per insert here (docs/benchmarks.md); the memory (152 MiB) is what a
 * table filled by guests at their limits would hold anyway. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZW_MAX_CT);
	__type(key, struct zw_ct_key);
	__type(value, struct zw_ct_entry);
} zw_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ZW_MAX_ENDPOINTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct zw_ct_usage);
} zw_ct_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ZW_CT_BORN_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} zw_ct_born SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZW_R_MAX);
	__type(key, __u32);
	__type(value, struct zw_counter);
} zw_st_reason SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZW_MAX_RULES);
	__type(key, __u32);
	__type(value, struct zw_rule_stats);
} zw_st_rule SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZW_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct zw_ep_stats);
} zw_st_ep SEC(".maps");

/* Zone-pair counters by slot (zw_zp_index: pair -> slot, see the ABI
 * header): zone ids go up to 65,000, so a pair-indexed array would not fit;
 * the pairs that carry traffic are few. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZW_MAX_ZP_STATS);
	__type(key, __u32);
	__type(value, struct zw_zp_stats);
} zw_st_zpair SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZW_MAX_ZP_STATS);
	__type(key, struct zw_zp_stats_key);
	__type(value, __u32);
} zw_zp_index SEC(".maps");

/* slot -> the pair that took it */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZW_MAX_ZP_STATS);
	__type(key, __u32);
	__type(value, struct zw_zp_stats_key);
} zw_zp_claim SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zw_zp_alloc);
} zw_zp_alloc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZW_DENY_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct zw_deny_cache_ent);
} zw_deny_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZW_EP_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct zw_ep_cache_ent);
} zw_ep_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZW_FLOW_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct zw_flow_cache_ent);
} zw_flow_cache SEC(".maps");

/* Flow and deny events (struct zw_event); one consumer at a time. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, ZW_EV_RINGBUF_BYTES);
} zw_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ZW_EV_SLOTS);
	__type(key, __u32);
	__type(value, struct zw_ev_bucket);
} zw_ev_bucket SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZW_EV_SLOTS);
	__type(key, __u32);
	__type(value, struct zw_ev_stats);
} zw_st_ev SEC(".maps");

#endif
