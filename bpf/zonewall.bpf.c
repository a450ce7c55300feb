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
#include "lib/antispoof.h"
#include "lib/stats.h"
#include "lib/cache.h"

char LICENSE[] SEC("license") = "GPL";

/* Bytes tc pulls into the linear area before parsing: Ethernet, IPv6 with
 * extension headers, ICMP and the header it quotes. AF_PACKET-built skbs are
 * not linear; parsing them without a pull would see nothing. */
#define ZW_PULL_LEN 256

struct zw_ctx {
	struct xdp_md *xdp;		/* one of the two contexts */
	struct __sk_buff *skb;
	__u32 ifindex;
	__u32 len;
	int hook;	/* enum zw_hook */
	int vlan;	/* tc: tag carried in skb metadata */
};

static __always_inline int zw_is_nd(__u8 type)
{
	return (type >= 133 && type <= 137) || (type >= 130 && type <= 132) || type == 143;
}

/* Ethernet, IP, transport; for ICMP errors also the quoted header. Sets
 * p->fast for packets the established fast path may take. */
static __always_inline int zw_parse(void *data, void *data_end, struct zw_pkt *p)
{
	struct zw_cursor c = { .pos = data, .end = data_end };
	struct ethhdr *eth = c.pos;
	__u16 inner_port = 0;
	__u8 type = 0, inner_type = 0;
	__be16 h_proto;
	int r;

	if ((void *)(eth + 1) > c.end)
		return ZW_R_DROP_MALFORMED;
	h_proto = eth->h_proto;
	/* Words (zw_mac_eq): a packet load need not be aligned. */
	*(__u32 *)p->src_mac = *(const __u32 *)eth->h_source;
	*(__u16 *)(p->src_mac + 4) = *(const __u16 *)(eth->h_source + 4);
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
	/* ICMPv6 over IPv4 or ICMP over IPv6 does not exist: it would take the
	 * other family's ICMP paths (neighbour discovery, errors). */
	if (p->tuple.proto == (h_proto == bpf_htons(ETH_P_IP) ? IPPROTO_ICMPV6 : IPPROTO_ICMP))
		return ZW_R_DROP_MALFORMED;
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
		return zw_parse_nd(&c, p);
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
		return ZW_OK;
	}
	/* Group destinations have no single peer (never tracked): IPv4
	 * 224.0.0.0/4 and above, IPv6 ff00::/8 (zw_is_group, with the family
	 * known here). DHCP is decided by hygiene. */
	if (h_proto == bpf_htons(ETH_P_IP) ? p->tuple.daddr[12] >= 224 : p->tuple.daddr[0] == 0xff)
		return ZW_OK;
	if (p->tuple.proto == IPPROTO_UDP && zw_is_dhcp_port(p->tuple.sport, p->tuple.dport))
		return ZW_OK;
	p->fast = 1;
	/* The tuple's last word (ports, protocol) again as one 64-bit store:
	 * the fast path reads it as a word, and a load spanning the narrower
	 * stores that wrote it cannot be forwarded from them (a stall of a
	 * dozen cycles or more on x86). */
	((__u64 *)&p->tuple)[4] = zw_ct_key_w4(p->tuple.sport, p->tuple.dport, p->tuple.proto);
	return ZW_OK;
}

/* The parser as global subprograms, one per context type: checked once by
 * the verifier, whatever the paths after it. */
ZW_SUBPROG int zw_parse_xdp(struct xdp_md *ctx, struct zw_pkt *p)
{
	if (!ctx || !p)
		return ZW_R_DROP_MALFORMED;
	return zw_parse((void *)(long)ctx->data, (void *)(long)ctx->data_end, p);
}

ZW_SUBPROG int zw_parse_skb(struct __sk_buff *skb, struct zw_pkt *p)
{
	if (!skb || !p)
		return ZW_R_DROP_MALFORMED;
	return zw_parse((void *)(long)skb->data, (void *)(long)skb->data_end, p);
}

/* An echo (or timestamp) request belongs to its flow's original direction,
 * a reply to the reply direction: the key holds only the identifier, so
 * without this a request sent back along an allowed ping's flow would pass
 * as its "reply". A mismatch is judged as a packet without a flow. */
static __always_inline int zw_echo_dir_ok(const struct zw_pkt *p, int dir)
{
	__u8 t = p->icmp_type;

	if (p->tuple.proto == IPPROTO_ICMP) {
		if (t == 8 || t == 13)
			return dir == ZW_CT_ORIG;
		if (t == 0 || t == 14)
			return dir == ZW_CT_REPLY;
	} else if (p->tuple.proto == IPPROTO_ICMPV6) {
		if (t == 128)
			return dir == ZW_CT_ORIG;
		if (t == 129)
			return dir == ZW_CT_REPLY;
	}
	return 1;
}

/* Everything but the established fast path: hygiene, related ICMP errors,
 * multicast, re-judgement after a flip, new flows. A global subprogram, so
 * the verifier checks it once for any packet instead of once per parse
 * outcome. Returns the reason; io->rule receives the deciding rule. */

ZW_SUBPROG int zw_slow(const struct zw_config *cfg, const struct zw_endpoint *ep,
		       struct zw_pkt *p, struct zw_acct *io)
{
	/* The flow's canonical key: in p->inner, unused by an IP packet that is
	 * not an ICMP error, and turned in place into its own canonical form
	 * for one (the stack has no room for another key). */
	struct zw_ct_key *fk = &p->inner;
	struct zw_verdict v = {};
	struct zw_policy_key q = {};
	struct zw_ct_entry *ct;
	__u32 rule = ZW_RULE_NONE, src_if, dst_if, gen, ifindex, ep_if;
	__u64 now;
	__u16 sz = ZW_ZONE_NONE, dz = ZW_ZONE_NONE;
	int reason, dir = ZW_CT_ORIG, ep_is_src, from_vm;

	if (!cfg || !ep || !p || !io)
		return ZW_R_DROP_MALFORMED;
	gen = io->gen;
	ifindex = io->ifindex;
	/* The VM's side of a flow may take the fast path only if its addresses
	 * were checked: not while none is known (its replies must meet
	 * drop_no_address in here). */
	ep_if = (ep->flags & (ZW_EPF_CHECK_IP | ZW_EPF_NO_ADDRS)) ==
				(ZW_EPF_CHECK_IP | ZW_EPF_NO_ADDRS) ? 0 : io->ifindex;
	from_vm = io->from_vm;
	now = io->now;
	ct = p->l3 == ZW_L3_IP && !p->icmp_error && !zw_is_group(p->tuple.daddr) && !io->no_flow ?
		     zw_ct_lookup(&p->tuple, fk, &dir, now) : NULL;
	if (ct && !zw_echo_dir_ok(p, dir))
		ct = NULL;

	if (from_vm) {
		reason = zw_hygiene_from_vm(ep, p, gen, ifindex);
		if (reason != ZW_OK)
			goto out;
	} else if (p->tuple.proto == IPPROTO_UDP && p->l3 == ZW_L3_IP &&
		   ((p->tuple.sport == bpf_htons(67) && p->tuple.dport == bpf_htons(68)) ||
		    (p->tuple.sport == bpf_htons(547) && p->tuple.dport == bpf_htons(546)))) {
		reason = ZW_R_PASS_DHCP;	/* a DHCP server's answer to the VM */
		goto out;
	} else {
		reason = zw_hygiene_to_vm(ep, p, gen, ifindex);
		if (reason != ZW_OK)
			goto out;
	}
	if (p->l3 == ZW_L3_ARP) {
		reason = ZW_R_PASS_ARP;
		goto out;
	}
	if (p->l3 == ZW_L3_ND) {
		reason = ZW_R_PASS_ND;
		goto out;
	}
	if (p->icmp_error) {
		ct = zw_ct_lookup(&p->inner, fk, &dir, now);
		if (ct) {
			rule = ct->rule_id;
			sz = ct->src_zone;
			dz = ct->dst_zone;
			io->zp_slot = ct->zp_slot;
			reason = ZW_R_PASS_RELATED;
		} else {
			reason = ZW_R_DROP_ICMP_UNRELATED;
		}
		goto out;
	}

	if (zw_is_group(p->tuple.daddr)) {
		/* No single peer, so no flow: the sender's zone to the world
		 * (from-VM), the sender's zone to each receiver's (to-VM). */
		if (from_vm) {
			sz = ep->zone;
			dz = ZW_ZONE_WORLD;
		} else {
			sz = zw_addr_of(gen, (const struct zw_addr16 *)(p->tuple.saddr), &src_if);
			dz = ep->zone;
		}
		q.src_zone = sz;
		q.dst_zone = dz;
		q.proto = p->tuple.proto;
		q.port = p->policy_port;
		zw_judge(cfg, gen, &q, &v);
		rule = v.rule_id;
		if (v.action == ZW_ACT_ALLOW)
			reason = ZW_R_PASS_MCAST;
		else
			reason = (v.flags & ZW_VF_AUDIT) ? ZW_R_PASS_AUDIT : ZW_R_DROP_POLICY;
		goto out;
	}

	if (ct) {
		if (p->tuple.proto == IPPROTO_TCP && (p->tcp_flags & 0x07))
			zw_ct_tcp_state(ct, p->tcp_flags);
		if (ct->gen == gen) {
			/* Checked above; not on the flow's own interface (a VIP
			 * moved, an address of another VM): the slow way. */
			rule = ct->rule_id;
			sz = ct->src_zone;
			dz = ct->dst_zone;
			io->zp_slot = ct->zp_slot;
			reason = (ct->flags & ZW_CTF_AUDIT) ? ZW_R_PASS_AUDIT : ZW_R_PASS_CT;
			goto out;
		}
		/* A new generation is live: judge the flow again, in its
		 * original direction, so a revoked rule stops it now; the
		 * interfaces of its ends are learned again (a VM may have
		 * moved to a new tap). */
		ep_is_src = from_vm == (dir == ZW_CT_ORIG);
		if (ep_is_src) {
			sz = ep->zone;
			src_if = ep_if;
			dz = zw_addr_of(gen, (const struct zw_addr16 *)zw_ct_orig_daddr(fk, ct), &dst_if);
		} else {
			sz = zw_addr_of(gen, (const struct zw_addr16 *)zw_ct_orig_saddr(fk, ct), &src_if);
			dz = ep->zone;
			dst_if = ep_if;
		}
		q.src_zone = sz;
		q.dst_zone = dz;
		q.proto = fk->proto;
		q.port = ct->policy_port;
		zw_judge(cfg, gen, &q, &v);
		rule = v.rule_id;
		if (v.action == ZW_ACT_ALLOW || (v.flags & ZW_VF_AUDIT)) {
			if (!zw_dry()) {
				ct->zp_slot = zw_zp_slot(sz, dz);
				io->zp_slot = ct->zp_slot;
				ct->gen = gen;
				ct->rule_id = v.rule_id;
				ct->src_if = src_if;
				ct->dst_if = dst_if;
				ct->src_zone = sz;
				ct->dst_zone = dz;
				ct->flags = (ct->flags &
					     (ZW_CTF_OWNED | ZW_CTF_SWAPPED | ZW_CTF_FIN | ZW_CTF_RST)) |
					    (v.action == ZW_ACT_ALLOW ? 0 : ZW_CTF_AUDIT);
			}
			reason = v.action == ZW_ACT_ALLOW ? ZW_R_PASS_CT : ZW_R_PASS_AUDIT;
			goto out;
		}
		zw_ct_delete(fk, ct);
		reason = ZW_R_DROP_REVOKED;
		goto out;
	}

	/* Only a SYN (without ACK) opens a TCP flow: ACK scans, stray RST/FIN
	 * and unsolicited SYN-ACKs never create conntrack state. */
	if (p->tuple.proto == IPPROTO_TCP && (p->tcp_flags & 0x12) != 0x02) {
		reason = ZW_R_DROP_TCP_NO_SYN;
		goto out;
	}
	if (from_vm) {
		sz = ep->zone;
		src_if = ep_if;
		dz = zw_addr_of(gen, (const struct zw_addr16 *)(p->tuple.daddr), &dst_if);
	} else {
		sz = zw_addr_of(gen, (const struct zw_addr16 *)(p->tuple.saddr), &src_if);
		src_if = 0;	/* it did not come through its from-VM hook */
		dz = ep->zone;
		dst_if = ep_if;
	}
	q.src_zone = sz;
	q.dst_zone = dz;
	q.proto = p->tuple.proto;
	q.port = p->policy_port;
	zw_judge(cfg, gen, &q, &v);
	rule = v.rule_id;
	if (v.action == ZW_ACT_ALLOW || (v.flags & ZW_VF_AUDIT)) {
		struct zw_ct_entry e = {
			.created_ns = now,
			.last_seen_ns = now,
			.gen = gen,
			.rule_id = v.rule_id,
			.policy_port = p->policy_port,
			.flags = v.action == ZW_ACT_ALLOW ? 0 : ZW_CTF_AUDIT,
			.owner = ep->id,
			.src_if = src_if,
			.dst_if = dst_if,
			.src_zone = sz,
			.dst_zone = dz,
		};

		e.zp_slot = zw_zp_slot(sz, dz);
		io->zp_slot = e.zp_slot;

		if (zw_ct_canon(&p->tuple, fk))
			e.flags |= ZW_CTF_SWAPPED;
		reason = zw_ct_create(fk, &e, ep->ct_limit);
		if (reason == ZW_OK)
			reason = v.action == ZW_ACT_ALLOW ? ZW_R_PASS_NEW : ZW_R_PASS_AUDIT;
	} else {
		reason = ZW_R_DROP_POLICY;
	}
out:
	io->rule = rule;
	io->src_zone = sz;
	io->dst_zone = dz;
	io->vflags = v.flags;
	return reason;
}

/* A cache miss: the interface's endpoint from zw_endpoints into c.
 * Returns 0 if it has none in generation gen (c is left as it was). The
 * cache is each program instance's own (never pinned), so a dry-run
 * variant filling its cache touches nothing production sees. */
ZW_SUBPROG int zw_ep_fill(__u32 gen, __u32 ifindex, struct zw_ep_cache_ent *c)
{
	struct zw_endpoint_key ek = { .ifindex = ifindex };
	struct zw_endpoint_val *ev;
	struct zw_endpoint *ep;

	if (!c)
		return 0;
	ev = bpf_map_lookup_elem(&zw_endpoints, &ek);
	if (!ev)
		return 0;
	ep = &ev->slot[ZW_SLOT(gen)];
	if (ep->zone == ZW_ZONE_NONE)
		return 0;
	c->ep = *ep;
	c->ifindex = ifindex;
	c->gen = gen;
	return 1;
}

/* The interface's endpoint in generation gen, through the per-CPU
 * direct-mapped cache (ABI header): one array lookup when it hits. */
static __always_inline const struct zw_endpoint *zw_endpoint_of(__u32 gen, __u32 ifindex)
{
	__u32 slot = ifindex & (ZW_EP_CACHE_SLOTS - 1);
	struct zw_ep_cache_ent *c = bpf_map_lookup_elem(&zw_ep_cache, &slot);

	if (!c)
		return NULL;
	if (c->gen == gen && c->ifindex == ifindex)
		return &c->ep;
	return zw_ep_fill(gen, ifindex, c) ? &c->ep : NULL;
}

/* The caches' answer from the frame (lib/cache.h), one per context type.
 * Not inlined: their frames are not on the stack the slow path's calls add
 * up to. */
static __attribute__((noinline)) int zw_frame_xdp(struct xdp_md *ctx, const struct zw_endpoint *ep,
						  struct zw_acct *io, __u32 hook,
						  const struct zw_config *cfg)
{
	return zw_frame_cached((void *)(long)ctx->data, (void *)(long)ctx->data_end, ep, hook, io,
			       cfg);
}

static __attribute__((noinline)) int zw_frame_skb(struct __sk_buff *skb,
						  const struct zw_endpoint *ep,
						  struct zw_acct *io, __u32 hook,
						  const struct zw_config *cfg)
{
	return zw_frame_cached((void *)(long)skb->data, (void *)(long)skb->data_end, ep, hook, io,
			       cfg);
}

/* A packet the denied-packet cache answered from the frame: counted like
 * any other; its event, when the endpoint's budget has one (rate-limited:
 * rarely), needs the parsed packet. */
static __always_inline int zw_denied_cached(struct zw_ctx *x, const struct zw_config *cfg,
					    __s64 ep_id, __u64 now, struct zw_acct *io,
					    struct zw_pkt *p)
{
	io->now = now;
	if (!zw_dry()) {
		zw_count_packet(ZW_R_DROP_POLICY, 0, io->rule, ep_id, x->hook, x->len, now, io);
		if (zw_ev_wanted(ZW_R_DROP_POLICY, io->vflags)) {
			__u32 slot = zw_ev_slot(ep_id);
			struct zw_ev_stats *st = zw_ev_admit(slot, now, cfg);

			__builtin_memset(p, 0, sizeof(*p));
			if (st && (x->xdp ? zw_parse_xdp(x->xdp, p) : zw_parse_skb(x->skb, p)) == ZW_OK)
				zw_ev_write(st, ZW_R_DROP_POLICY, io->rule, slot, x->hook, x->len, now,
					    p, io);
		}
	}
	if (zw_verdict_mode())
		return ZW_VERDICT_ENCODE(io->rule, ZW_R_DROP_POLICY);
	return 0;
}

static __always_inline int zw_handle(struct zw_ctx *x)
{
	struct zw_pkt p;	/* zeroed once the flow cache has not answered */
	struct zw_acct io = { .ifindex = x->ifindex, .zp_slot = ZW_ZP_NONE };
	const struct zw_endpoint *ep;
	struct zw_config *cfg;
	struct zw_ct_entry *ct;
	__u64 now = 0;
	__u32 zero = 0, gen, epoch, rule = ZW_RULE_NONE;
	__s64 ep_id = -1;
	int reason, dir = ZW_CT_ORIG;
	int from_vm = x->hook == ZW_HOOK_FROM_VM;

	cfg = bpf_map_lookup_elem(&zw_config, &zero);
	gen = cfg ? ZW_READ_ONCE(cfg->active_gen) : 0;
	epoch = cfg ? ZW_READ_ONCE(cfg->ct_epoch) : 0;	/* before any conntrack lookup */
	io.gen = gen;
	ep = cfg && gen ? zw_endpoint_of(gen, x->ifindex) : NULL;
	if (!ep || x->vlan) {
		__builtin_memset(&p, 0, sizeof(p));
		reason = !cfg || !gen ? ZW_R_DROP_NO_POLICY
		       : !ep	      ? ZW_R_DROP_NO_ENDPOINT
				      : ZW_R_DROP_VLAN;
		if (ep)
			ep_id = ep->id;
		goto out;
	}
	ep_id = ep->id;
	/* The caches, straight from the frame (lib/cache.h): a packet of a flow
	 * this CPU passed moments ago, or one it denied, no flow having been
	 * created for it since. */
	reason = x->xdp ? zw_frame_xdp(x->xdp, ep, &io, x->hook, cfg)
			: zw_frame_skb(x->skb, ep, &io, x->hook, cfg);
	if (reason == ZW_R_PASS_CT || reason == ZW_R_PASS_AUDIT)
		return zw_account_cached(reason, io.rule, ep_id, x->hook, x->len, &io);
	now = bpf_ktime_get_coarse_ns();
	if (reason == ZW_R_DROP_POLICY)
		return zw_denied_cached(x, cfg, ep_id, now, &io, &p);
	__builtin_memset(&p, 0, sizeof(p));
	reason = x->xdp ? zw_parse_xdp(x->xdp, &p) : zw_parse_skb(x->skb, &p);
	if (reason != ZW_OK)
		goto out;

	/* Established fast path: a flow of this generation, on the interface
	 * its direction belongs to, was checked (source, destination, policy)
	 * when it was created: one lookup and out. */
	if (p.fast && !(from_vm && (ep->flags & ZW_EPF_CHECK_MAC) && !zw_mac_eq(p.src_mac, ep->mac))) {
		struct zw_flow_cache_ent *fill;

		/* Births before the lookup: a denial remembered below vouches
		 * for no flow only while they stay the same (lib/cache.h). No
		 * live flow in the tuple's bucket: no flow, no lookup. */
		__u64 bw = zw_born_read(zw_born_slot_of(&p.tuple));

		io.born = zw_ctb_born(bw);
		/* p.inner is free here (no ICMP error): the key's buffer, as
		 * stack is short (the slow path's frame comes on top). */
		ct = zw_ctb_live(bw) ? zw_ct_lookup(&p.tuple, &p.inner, &dir, now) : NULL;
		if (ct && !zw_echo_dir_ok(&p, dir))
			ct = NULL;
		if (ct && ct->gen == gen && zw_ct_side(ct, dir, from_vm) == x->ifindex) {
			if (p.tuple.proto == IPPROTO_TCP && (p.tcp_flags & 0x07))
				zw_ct_tcp_state(ct, p.tcp_flags);
			rule = ct->rule_id;
			io.src_zone = ct->src_zone;
			io.dst_zone = ct->dst_zone;
			io.zp_slot = ct->zp_slot;
			reason = (ct->flags & ZW_CTF_AUDIT) ? ZW_R_PASS_AUDIT : ZW_R_PASS_CT;
			fill = zw_fc_eligible(&p) ? zw_fc_slot(&p.tuple, x->ifindex, x->hook) : NULL;
			if (fill)
				zw_fc_fill(fill, &p.tuple, x->ifindex, x->hook, gen, epoch, ct, reason);
			goto out;
		}
		io.no_flow = !ct;	/* the slow path need not look again */
		if (!ct && (p.tuple.proto != IPPROTO_TCP || (p.tcp_flags & 0x12) == 0x02)) {
			const struct zw_deny_val *dv = zw_deny_cached(&p, x->ifindex, x->hook, gen);

			if (dv) {
				rule = dv->rule_id;
				io.src_zone = dv->src_zone;
				io.dst_zone = dv->dst_zone;
				io.zp_slot = dv->zp_slot;
				io.vflags = dv->vflags;
				reason = ZW_R_DROP_POLICY;
				goto out;
			}
		}
	}

	io.now = now;
	io.from_vm = from_vm;
	reason = zw_slow(cfg, ep, &p, &io);
	rule = io.rule;
	if (reason == ZW_R_DROP_POLICY && io.no_flow)
		zw_deny_remember(&p, &io, x->hook);
out:
	if (!now)	/* left before the clock was read */
		now = bpf_ktime_get_coarse_ns();
	io.now = now;
	return zw_account(reason, rule, ep_id, x->hook, x->len, now, &p, &io, cfg);
}

SEC("xdp")
int zw_from_vm_xdp(struct xdp_md *ctx)
{
	__u32 len = (__u32)((long)ctx->data_end - (long)ctx->data);
	struct zw_ctx x;

	/* The length now: left to itself, clang (ALU32) keeps the packet
	 * pointers across the calls for it and spills one 32 bits wide, which
	 * the verifier refuses. */
	barrier_var(len);
	x = (struct zw_ctx){
		.xdp = ctx,
		.len = len,
		.ifindex = ctx->ingress_ifindex,
		.hook = ZW_HOOK_FROM_VM,
	};

	return zw_ret(zw_handle(&x), XDP_PASS, XDP_DROP);
}

static __always_inline int zw_tc(struct __sk_buff *skb, int hook)
{
	__u32 want = skb->len < ZW_PULL_LEN ? skb->len : ZW_PULL_LEN;
	struct zw_ctx x = {
		.skb = skb,
		.ifindex = skb->ifindex,
		.len = skb->len,
		.hook = hook,
		.vlan = skb->vlan_present,
	};

	if (zw_verdict_mode() && skb->cb[0])
		x.ifindex = skb->cb[0];	/* test run on a synthetic ifindex */
	if ((__u32)(skb->data_end - skb->data) < want)
		bpf_skb_pull_data(skb, want);
	return zw_ret(zw_handle(&x), TC_ACT_OK, TC_ACT_SHOT);
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
