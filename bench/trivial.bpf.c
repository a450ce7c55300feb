// SPDX-License-Identifier: GPL-2.0-only
/* The benchmark's reference programs: the floor every zonewall cost is
 * divided by (XDP_PASS, TC_ACT_OK), the trivial XDP drop that zonewall's
 * denied-traffic packet rate is compared with, and XDP_TX, which the
 * live-frames generator runs to put frames on the wire of a veth. */
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

SEC("xdp")
int bench_xdp_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

SEC("tc")
int bench_tc_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
