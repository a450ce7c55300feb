// SPDX-License-Identifier: GPL-2.0-only
/* The benchmark's reference programs: the floor every zonewall cost is
 * divided by (XDP_PASS, TC_ACT_OK), the trivial XDP drop that zonewall's
 * denied-traffic packet rate is compared with, and the varying-tuple
 * wrapper (below). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int bench_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int bench_xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("tc")
int bench_tc_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

/* The varying-tuple wrapper: BPF_PROG_TEST_RUN with repeat runs one frame
 * over and over, so every run after the first of an allowed flow is an
 * established packet. The wrapper adds one to a port of the frame (which
 * persists from run to run) and tail-calls the program under test (slot 0
 * of its program array), so each run sees a tuple it has not seen: a new
 * flow, or a denial without a flow. Its own cost is measured the same way
 * with the floor program in the slot, and subtracted. */
__u32 bench_vary_dport = 0;	/* 0: the source port, 1: the destination port */

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_next_xdp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_next_tc SEC(".maps");

/* UDP over IPv4 without options or over IPv6 without extension headers
 * (the benchmark's frames): 0, or -1 for anything else. */
static __always_inline int bench_bump(void *data, void *data_end)
{
	__u8 *d = data, *port;
	__u16 v;

	if ((void *)(d + 14 + 40 + 8) > data_end)
		return -1;
	if (d[12] == 0x08 && d[13] == 0x00)
		port = d + 14 + 20;
	else if (d[12] == 0x86 && d[13] == 0xdd)
		port = d + 14 + 40;
	else
		return -1;
	if (bench_vary_dport)
		port += 2;
	v = (__u16)((port[0] << 8) | port[1]) + 1;
	port[0] = v >> 8;
	port[1] = v & 0xff;
	return 0;
}

SEC("xdp")
int bench_vary_xdp(struct xdp_md *ctx)
{
	if (bench_bump((void *)(long)ctx->data, (void *)(long)ctx->data_end))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &bench_next_xdp, 0);
	return XDP_ABORTED;
}

SEC("tc")
int bench_vary_tc(struct __sk_buff *skb)
{
	if (bench_bump((void *)(long)skb->data, (void *)(long)skb->data_end))
		return TC_ACT_SHOT;
	bpf_tail_call(skb, &bench_next_tc, 0);
	return TC_ACT_SHOT;
}

/* The one kernel operation a new flow cannot avoid, alone: an insert of a
 * new key into a hash map shaped like zw_ct (1M entries, preallocated as
 * zw_ct is, 40-byte key, 48-byte value), the key taken from the frame's
 * ports so the varying wrapper makes every run's key new. The cost the
 * new-flow path can never go below on this machine. */
struct bench_ct_key {
	__u64 w[5];
};

struct bench_ct_val {
	__u64 w[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__type(key, struct bench_ct_key);
	__type(value, struct bench_ct_val);
} bench_ct SEC(".maps");

SEC("xdp")
int bench_ct_insert(struct xdp_md *ctx)
{
	__u8 *d = (void *)(long)ctx->data;
	struct bench_ct_key k = { { 1, 2, 3, 4, 0 } };
	struct bench_ct_val v = {};

	if ((void *)(d + 14 + 40 + 8) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	k.w[4] = *(__u32 *)(d + (d[12] == 0x86 ? 14 + 40 : 14 + 20));
	return bpf_map_update_elem(&bench_ct, &k, &v, BPF_NOEXIST) == 0 ? XDP_PASS : XDP_DROP;
}
