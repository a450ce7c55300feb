// SPDX-License-Identifier: GPL-2.0-only
/* zonewall datapath entry points. From the VM (what it sends): the same
 * policy code as XDP and as tc ingress on the host side of its interface.
 * To the VM (what it receives): tc egress. All share the maps in lib/maps.h. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/compiler.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/policy.h"
#include "lib/conntrack.h"
#include "lib/stats.h"

char LICENSE[] SEC("license") = "GPL";

/* Bytes tc pulls into the linear area before parsing: Ethernet, IPv6 with
 * extension headers, ICMP and the header it quotes. AF_PACKET-built skbs are
 * not linear; parsing them without a pull would see nothing. */
#define ZW_PULL_LEN 256

struct zw_ctx {
	void *data;
	void *data_end;
	__u32 ifindex;
	__u32 len;
	int hook;	/* enum zw_hook */
	int vlan;	/* tc: tag carried in skb metadata */
};

static __always_inline int zw_is_nd(__u8 type)
{
	return (type >= 133 && type <= 137) || (type >= 130 && type <= 132) || type == 143;
}

/* Ethernet, IP, transport; for ICMP errors also the quoted header. */
static __always_inline int zw_parse(struct zw_ctx *x, struct zw_pkt *p)
{
	struct zw_cursor c = { .pos = x->data, .end = x->data_end };
	struct ethhdr *eth = c.pos;
	__u16 inner_port = 0;
	__u8 type = 0, inner_type = 0;
	__be16 h_proto;
	int r;

	if ((void *)(eth + 1) > c.end)
		return ZW_R_DROP_MALFORMED;
	h_proto = eth->h_proto;
	__builtin_memcpy(p->src_mac, eth->h_source, 6);
	c.pos = eth + 1;
	if (h_proto == bpf_htons(ETH_P_8021Q) || h_proto == bpf_htons(ZW_ETH_P_8021AD))
		return ZW_R_DROP_VLAN;
	if (h_proto == bpf_htons(ETH_P_ARP)) {
		/* Ethernet/IPv4 ARP only: htype 1, ptype 0x0800, hlen 6, plen 4,
		 * then sender MAC and IPv4 address. */
		__u8 *a = c.pos;

		if ((void *)(a + 28) > c.end)
			return ZW_R_DROP_MALFORMED;
		if (a[0] != 0 || a[1] != 1 || a[2] != 0x08 || a[3] != 0 || a[4] != 6 || a[5] != 4)
			return ZW_R_DROP_MALFORMED;
		__builtin_memcpy(p->arp_sha, a + 8, 6);
		__builtin_memcpy(&p->arp_spa, a + 14, 4);
		p->l3 = ZW_L3_ARP;
		return ZW_OK;
	}
	if (h_proto == bpf_htons(ETH_P_IP))
		r = zw_parse_ipv4(&c, &p->tuple);
	else if (h_proto == bpf_htons(ETH_P_IPV6))
		r = zw_parse_ipv6(&c, &p->tuple);
	else
		return ZW_R_DROP_ETHERTYPE;
	if (r != ZW_OK)
		return r;
	r = zw_parse_ports(&c, p->tuple.proto, &p->tuple, &p->policy_port, &type);
	if (r != ZW_OK)
		return r;
	p->icmp_type = type;
	if (p->tuple.proto == IPPROTO_TCP) {
		/* A whole TCP header: the flags decide whether a flow may start. */
		__u8 *th = c.pos;

		if ((void *)(th + 20) > c.end)
			return ZW_R_DROP_MALFORMED;
		p->tcp_flags = th[13];
	}
	if (p->tuple.proto == IPPROTO_ICMPV6 && zw_is_nd(type)) {
		p->l3 = ZW_L3_ND;
		return ZW_OK;
	}
	if ((p->tuple.proto == IPPROTO_ICMP || p->tuple.proto == IPPROTO_ICMPV6) &&
	    zw_icmp_is_error(p->tuple.proto, type)) {
		c.pos += 8;
		if (p->tuple.proto == IPPROTO_ICMP)
			r = zw_parse_ipv4(&c, &p->inner);
		else
			r = zw_parse_ipv6(&c, &p->inner);
		if (r != ZW_OK)
			return ZW_R_DROP_ICMP_UNRELATED;
		r = zw_parse_ports(&c, p->inner.proto, &p->inner, &inner_port, &inner_type);
		if (r != ZW_OK)
			return ZW_R_DROP_ICMP_UNRELATED;
		p->icmp_error = 1;
	}
	return ZW_OK;
}

static __always_inline int zw_mac_eq(const __u8 *a, const __u8 *b)
{
	return ((__u32)a[0] ^ b[0]) == 0 && ((__u32)a[1] ^ b[1]) == 0 && a[2] == b[2] &&
	       a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
}

/* Does this VM own the (IPv4-mapped or IPv6) address? Its own addresses map
 * to its interface in zw_addrs. */
static __always_inline int zw_owns(__u32 gen, const __u8 *addr, __u32 ifindex)
{
	struct zw_addr_key k = { .gen = gen };
	struct zw_addr_info *info;

	zw_copy16(k.addr, addr);
	info = bpf_map_lookup_elem(&zw_addrs, &k);
	return info && info->ifindex == ifindex;
}

static __always_inline int zw_is_v4_any(const __u8 *a)
{
	return a[10] == 0xff && a[11] == 0xff && a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] == 0;
}

static __always_inline int zw_is_v6_link_local(const __u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

static __always_inline int zw_is_v6_any(const __u8 *a)
{
	__u64 hi, lo;

	__builtin_memcpy(&hi, a, 8);
	__builtin_memcpy(&lo, a + 8, 8);
	return hi == 0 && lo == 0;
}

/* What a guest may say about itself (from-VM only): its MAC, its addresses,
 * no DHCP server or router advertisements. Returns ZW_OK to go on to the
 * policy, or the reason to leave with. */
static __always_inline int zw_hygiene(struct zw_ctx *x, const struct zw_endpoint *ep,
				      const struct zw_pkt *p, __u32 gen)
{
	const __u8 *src = p->tuple.saddr;
	__u16 sport = bpf_ntohs(p->tuple.sport), dport = bpf_ntohs(p->tuple.dport);
	__u8 spa[16] = {};

	if ((ep->flags & ZW_EPF_CHECK_MAC) && !zw_mac_eq(p->src_mac, ep->mac))
		return ZW_R_DROP_SPOOF_MAC;
	if (p->l3 == ZW_L3_ARP) {
		if ((ep->flags & ZW_EPF_CHECK_MAC) && !zw_mac_eq(p->arp_sha, ep->mac))
			return ZW_R_DROP_SPOOF_ARP;
		/* 0.0.0.0 is an ARP probe (RFC 5227), allowed before the address is. */
		zw_map_v4(spa, p->arp_spa);
		if ((ep->flags & ZW_EPF_CHECK_IP) && p->arp_spa != 0 && !zw_owns(gen, spa, x->ifindex))
			return ZW_R_DROP_SPOOF_ARP;
		return ZW_R_PASS_ARP;
	}
	if (p->l3 == ZW_L3_ND)
		return p->icmp_type == 134 ? ZW_R_DROP_GUEST_RA : ZW_OK;
	if (p->tuple.proto == IPPROTO_UDP) {
		if (sport == 67 || sport == 547)
			return ZW_R_DROP_GUEST_DHCP;
		if ((sport == 68 && dport == 67) || (sport == 546 && dport == 547))
			return ZW_R_PASS_DHCP;
	}
	if (!(ep->flags & ZW_EPF_CHECK_IP))
		return ZW_OK;
	if (zw_is_v6_link_local(src))
		return ZW_OK;
	if (zw_is_v4_any(src) || zw_is_v6_any(src) || !zw_owns(gen, src, x->ifindex))
		return ZW_R_DROP_SPOOF_IP;
	return ZW_OK;
}

static __always_inline int zw_handle(struct zw_ctx *x)
{
	struct zw_pkt p = {};
	struct zw_ct_key fk = {};
	struct zw_verdict v = {};
	struct zw_endpoint_key ek = {};
	struct zw_endpoint *ep;
	struct zw_config *cfg;
	struct zw_ct_entry *ct;
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0, gen, rule = ZW_RULE_NONE;
	__s64 ep_id = -1;
	__u16 sz, dz;
	int reason, dir, ep_is_src;

	cfg = bpf_map_lookup_elem(&zw_config, &zero);
	gen = cfg ? ZW_READ_ONCE(cfg->active_gen) : 0;
	if (!gen) {
		reason = ZW_R_DROP_NO_POLICY;
		goto out;
	}
	ek.gen = gen;
	ek.ifindex = x->ifindex;
	ep = bpf_map_lookup_elem(&zw_endpoints, &ek);
	if (!ep) {
		reason = ZW_R_DROP_NO_ENDPOINT;
		goto out;
	}
	ep_id = ep->id;
	if (x->vlan) {
		reason = ZW_R_DROP_VLAN;
		goto out;
	}
	reason = zw_parse(x, &p);
	if (reason != ZW_OK)
		goto out;
	if (x->hook == ZW_HOOK_FROM_VM) {
		reason = zw_hygiene(x, ep, &p, gen);
		if (reason != ZW_OK)
			goto out;
	} else if (p.tuple.proto == IPPROTO_UDP && p.l3 == ZW_L3_IP &&
		   ((p.tuple.sport == bpf_htons(67) && p.tuple.dport == bpf_htons(68)) ||
		    (p.tuple.sport == bpf_htons(547) && p.tuple.dport == bpf_htons(546)))) {
		reason = ZW_R_PASS_DHCP;	/* a DHCP server's answer to the VM */
		goto out;
	}
	if (p.l3 == ZW_L3_ARP) {
		reason = ZW_R_PASS_ARP;
		goto out;
	}
	if (p.l3 == ZW_L3_ND) {
		reason = ZW_R_PASS_ND;
		goto out;
	}
	if (p.icmp_error) {
		ct = zw_ct_lookup(&p.inner, &fk, &dir, now);
		if (ct) {
			rule = ct->rule_id;
			reason = ZW_R_PASS_RELATED;
		} else {
			reason = ZW_R_DROP_ICMP_UNRELATED;
		}
		goto out;
	}

	ct = zw_ct_lookup(&p.tuple, &fk, &dir, now);
	if (ct) {
		if (ct->gen == gen) {
			rule = ct->rule_id;
			reason = (ct->flags & ZW_CTF_AUDIT) ? ZW_R_PASS_AUDIT : ZW_R_PASS_CT;
			goto out;
		}
		/* A new generation is live: judge the flow again, in its
		 * original direction, so a revoked rule stops it now. */
		ep_is_src = (x->hook == ZW_HOOK_FROM_VM) == (dir == ZW_CT_ORIG);
		sz = ep_is_src ? ep->zone : zw_zone_of(gen, fk.saddr);
		dz = ep_is_src ? zw_zone_of(gen, fk.daddr) : ep->zone;
		zw_judge(gen, sz, dz, fk.proto, ct->policy_port, &v);
		rule = v.rule_id;
		if (v.action == ZW_ACT_ALLOW || (v.flags & ZW_VF_AUDIT)) {
			ct->gen = gen;
			ct->rule_id = v.rule_id;
			ct->flags = v.action == ZW_ACT_ALLOW ? 0 : ZW_CTF_AUDIT;
			reason = v.action == ZW_ACT_ALLOW ? ZW_R_PASS_CT : ZW_R_PASS_AUDIT;
			goto out;
		}
		bpf_map_delete_elem(&zw_ct, &fk);
		reason = ZW_R_DROP_REVOKED;
		goto out;
	}

	/* Only a SYN (without ACK) opens a TCP flow: ACK scans, stray RST/FIN
	 * and unsolicited SYN-ACKs never create conntrack state. */
	if (p.tuple.proto == IPPROTO_TCP && (p.tcp_flags & 0x12) != 0x02) {
		reason = ZW_R_DROP_TCP_NO_SYN;
		goto out;
	}
	if (x->hook == ZW_HOOK_FROM_VM) {
		sz = ep->zone;
		dz = zw_zone_of(gen, p.tuple.daddr);
	} else {
		sz = zw_zone_of(gen, p.tuple.saddr);
		dz = ep->zone;
	}
	zw_judge(gen, sz, dz, p.tuple.proto, p.policy_port, &v);
	rule = v.rule_id;
	if (v.action == ZW_ACT_ALLOW) {
		zw_ct_create(&p.tuple, gen, &v, p.policy_port, 0, now);
		reason = ZW_R_PASS_NEW;
	} else if (v.flags & ZW_VF_AUDIT) {
		zw_ct_create(&p.tuple, gen, &v, p.policy_port, ZW_CTF_AUDIT, now);
		reason = ZW_R_PASS_AUDIT;
	} else {
		reason = ZW_R_DROP_POLICY;
	}
out:
	return zw_account(reason, rule, ep_id, x->hook, x->len, now);
}

SEC("xdp")
int zw_from_vm_xdp(struct xdp_md *ctx)
{
	struct zw_ctx x = {
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
		.ifindex = ctx->ingress_ifindex,
		.hook = ZW_HOOK_FROM_VM,
	};

	x.len = x.data_end - x.data;
	return zw_handle(&x) ? XDP_PASS : XDP_DROP;
}

static __always_inline int zw_tc(struct __sk_buff *skb, int hook)
{
	__u32 want = skb->len < ZW_PULL_LEN ? skb->len : ZW_PULL_LEN;
	struct zw_ctx x = {
		.ifindex = skb->ifindex,
		.len = skb->len,
		.hook = hook,
		.vlan = skb->vlan_present,
	};

	if ((__u32)(skb->data_end - skb->data) < want)
		bpf_skb_pull_data(skb, want);
	x.data = (void *)(long)skb->data;
	x.data_end = (void *)(long)skb->data_end;
	return zw_handle(&x) ? TC_ACT_OK : TC_ACT_SHOT;
}

SEC("tc")
int zw_from_vm_tc(struct __sk_buff *skb)
{
	return zw_tc(skb, ZW_HOOK_FROM_VM);
}

SEC("tc")
int zw_to_vm_tc(struct __sk_buff *skb)
{
	return zw_tc(skb, ZW_HOOK_TO_VM);
}
