/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* zonewall kernel/user ABI: every map key and value, the verdict and reason
 * enums, and the capacities. Included by bpf/ (clang -target bpf) and ctl/
 * (C++). Plain C on <linux/types.h>; explicit padding, no bitfields.
 *
 * Generations and slots: every desired-state map (endpoints, addresses,
 * CIDRs, pairs, policy, zone pairs) holds two slots per key, one per
 * generation parity: a packet of generation `gen` reads slot[ZW_SLOT(gen)]
 * and treats an absent slot (its marker field 0, noted per value) as a
 * miss. An apply N -> N+1 writes slot[ZW_SLOT(N+1)] of the keys whose
 * content changes (and adds/removes keys), flips zw_config.active_gen with
 * one aligned 32-bit store, then settles the keys it touched (copies the
 * new slot over the old one; deletes keys absent in both). When no apply
 * runs, both slots of every key are equal. A packet sees one policy, never
 * a mixture, and a one-rule change writes only the entries it changes.
 * Maps hold the union of two generations' keys during an apply, so their
 * max_entries are ZW_GENS * capacity (no memory: hash and LPM entries are
 * allocated when written).
 *
 * Addresses: IPv4 is stored IPv4-mapped (::ffff:a.b.c.d), so one 16-byte
 * form serves both families. Byte order is noted on every field: "net" is
 * network (big endian), "host" is the CPU's.
 */
#ifndef ZONEWALL_ABI_ZONEWALL_H
#define ZONEWALL_ABI_ZONEWALL_H

#include <linux/types.h>

#ifdef __cplusplus
#define ZW_STATIC_ASSERT static_assert
#else
#define ZW_STATIC_ASSERT _Static_assert
#endif

/* ---- capacities (per generation unless noted) ---- */
#define ZW_GENS			2	/* live generations during an apply */
#define ZW_MAX_ENDPOINTS	16384	/* VM interfaces on one host */
#define ZW_MAX_ADDRS		65536	/* VM addresses (exact match) */
#define ZW_MAX_CIDRS		16384	/* external CIDR zone prefixes (LPM) */
#define ZW_MAX_PAIRS		16384	/* allowed address pairs (VIPs), per VM interface and address */
#define ZW_MAX_POLICY		262144	/* compiled policy entries */
#define ZW_MAX_ZPAIRS		65536	/* zone pairs that have rules */
#define ZW_MAX_ZP_STATS		8192	/* zone pairs with counters (not per gen) */
#define ZW_EV_RINGBUF_BYTES	(1 << 20)	/* flow/deny event ring buffer */
#define ZW_MAX_RULES		131072	/* rule ids, counters array size (all gens) */
#define ZW_MAX_ZONES		65000	/* zone ids fit in __u16 */
#define ZW_MAX_CT		1048576	/* tracked flows, all VMs (not per gen) */
#define ZW_CT_DEFAULT_LIMIT	65536	/* tracked flows one VM interface may open */

/* Slot of a generation in a two-slot value. */
#define ZW_SLOT(gen)		((gen) & 1)

/* ---- zones ---- */
#define ZW_ZONE_NONE		0	/* not a zone: absent / invalid */
#define ZW_ZONE_WORLD		1	/* an address no zone claims */
#define ZW_ZONE_UNZONED		2	/* a VM no zone matches */
#define ZW_ZONE_FIRST_USER	3

/* ---- rules ---- */
#define ZW_RULE_NONE		0	/* not judged by policy (ARP, ND, ...) */
#define ZW_RULE_DEFAULT_INTRA	1	/* defaults.intra_zone decided */
#define ZW_RULE_DEFAULT_INTER	2	/* defaults.inter_zone decided */
#define ZW_RULE_FIRST_USER	3

/* ---- policy map ---- */
#define ZW_PROTO_ANY		256	/* rule without a protocol */

enum zw_policy_kind {
	ZW_KIND_PORT = 0,	/* port: exact destination port or ICMP type */
	ZW_KIND_BLOCK = 1,	/* port: destination port >> ZW_BLOCK_SHIFT */
	ZW_KIND_PROTO = 2,	/* port: 0; every port of this protocol */
	ZW_KIND_DEFAULT = 3,	/* zones 0, proto 0, port: 0 intra, 1 inter */
};
#define ZW_BLOCK_SHIFT		8

/* Lookup order in the datapath for (src, dst, proto, port):
 * PORT(port) -> BLOCK(port >> 8) -> PROTO(proto) -> PROTO(ANY) -> DEFAULT.
 * The compiler emits disjoint entries so that the first hit is the answer
 * first-match over the ordered rules would give. */
struct zw_policy_key {
	__u16 src_zone;		/* host */
	__u16 dst_zone;		/* host */
	__u16 proto;		/* host: IP protocol number or ZW_PROTO_ANY */
	__u8 kind;		/* enum zw_policy_kind */
	__u8 pad0;
	__u16 port;		/* host: meaning depends on kind */
	__u16 pad1;
};

/* Zone pairs that have rule entries, and which kinds: the datapath skips
 * the lookups of kinds a pair does not have, and a pair without rules goes
 * straight to the defaults (held in zw_config, no lookup). */
struct zw_zpair_key {
	__u16 src_zone;		/* host */
	__u16 dst_zone;		/* host */
};

#define ZW_ZPK_PORT		0x01	/* has ZW_KIND_PORT entries */
#define ZW_ZPK_BLOCK		0x02	/* has ZW_KIND_BLOCK entries */
#define ZW_ZPK_PROTO		0x04	/* has ZW_KIND_PROTO entries for a protocol */
#define ZW_ZPK_ANY		0x08	/* has a ZW_KIND_PROTO entry for ZW_PROTO_ANY */

/* Value: the kinds per slot; 0 = absent (the defaults decide). */
struct zw_zpair {
	__u8 kinds[2];		/* ZW_ZPK_*, [ZW_SLOT(gen)] */
	__u8 pad0[2];
};

enum zw_action {
	ZW_ACT_DENY = 0,
	ZW_ACT_ALLOW = 1,
};

#define ZW_VF_AUDIT		0x01	/* a deny that passes: zone/rule in audit mode */
#define ZW_VF_LOG		0x02	/* emit an event: a deny (or audit) for a deny
				 * verdict, a new flow for an allow verdict */

struct zw_verdict {
	__u32 rule_id;		/* host: index into zw_st_rule */
	__u8 action;		/* enum zw_action */
	__u8 flags;		/* ZW_VF_* */
	__u16 pad0;
};

/* zw_policy value: a slot is absent when its rule_id is ZW_RULE_NONE (a
 * policy entry always names a rule >= ZW_RULE_FIRST_USER). */
struct zw_policy_val {
	struct zw_verdict slot[2];	/* [ZW_SLOT(gen)] */
};

/* ---- endpoints: one VM interface, keyed by ifindex ---- */
struct zw_endpoint_key {
	__u32 ifindex;		/* host */
};

/* Guest hygiene, per VM interface (the zone's "hygiene" switches, see
 * docs/security.md). Checks that need what the VM is (MAC, addresses) are
 * only set when the control plane knows it, except CHECK_IP: with
 * NO_ADDRS as well, the VM may send only what it needs to get an address
 * (DHCP, ARP probes, neighbour discovery from :: or link-local). */
#define ZW_EPF_AUDIT		0x0001	/* endpoint's zone is in audit mode */
#define ZW_EPF_CHECK_MAC	0x0002	/* frames from the VM must carry its MAC */
#define ZW_EPF_CHECK_IP		0x0004	/* the VM may only send from its addresses */
#define ZW_EPF_CHECK_ARP	0x0008	/* ARP sender MAC/address must be the VM's */
#define ZW_EPF_CHECK_ND		0x0010	/* NS/NA/RS addresses and link-layer options must be the VM's */
#define ZW_EPF_BLOCK_RA		0x0020	/* router advertisements and redirects from the VM dropped */
#define ZW_EPF_BLOCK_DHCPD	0x0040	/* DHCP/DHCPv6 server messages from the VM dropped */
#define ZW_EPF_NO_ADDRS		0x0080	/* none of the VM's addresses is known yet */

struct zw_endpoint {
	__u32 id;		/* host: stable index into zw_st_ep and zw_ct_count */
	__u16 zone;		/* host */
	__u16 flags;		/* host: ZW_EPF_* */
	__u8 mac[6];		/* the VM's MAC, as on the wire */
	__u16 pad0;
	__u32 ct_limit;		/* host: flows this interface may open (zw_ct_count) */
	__u32 pad1;
};

/* zw_endpoints value: a slot is absent when its zone is ZW_ZONE_NONE (an
 * endpoint is always in a zone, ZW_ZONE_UNZONED at least). */
struct zw_endpoint_val {
	struct zw_endpoint slot[2];	/* [ZW_SLOT(gen)] */
};

/* ---- addresses -> zone ---- */
struct zw_addr_key {
	__u8 addr[16];		/* net, IPv4-mapped for IPv4 */
};

#define ZW_AIF_SHARED		0x0001	/* an allowed-address-pair address (VIP): see zw_pairs */
#define ZW_AIF_INHERITED	0x0002	/* zw_cidrs: the prefix is not in this slot's
					 * generation; zone is its longest present
					 * covering prefix's (see zw_cidr_key) */

struct zw_addr_info {
	__u16 zone;		/* host; ZW_ZONE_NONE: absent slot */
	__u16 flags;		/* host: ZW_AIF_* */
	__u32 ifindex;		/* host: owning VM interface; 0 for CIDR zones and VIPs */
};

/* zw_addrs and zw_cidrs value: a slot is absent when its zone is
 * ZW_ZONE_NONE. */
struct zw_addr_val {
	struct zw_addr_info slot[2];	/* [ZW_SLOT(gen)] */
};

/* Allowed address pairs: (interface, address) the VM may send from besides
 * its own addresses, e.g. a VIP that moves between VMs of one zone. Only
 * consulted when the own-address lookup misses. Value: __u32, bit
 * ZW_SLOT(gen) set when the pair is present in that slot. */
struct zw_pair_key {
	__u32 ifindex;		/* host */
	__u8 addr[16];		/* net, IPv4-mapped for IPv4 */
};

/* LPM key: prefixlen = bits, with bits = 96 + len for an IPv4 /len. Both
 * generations share one trie, so a prefix of only one generation would
 * still win the longest match in the other: each slot holds the effective
 * answer of its generation for that prefix, the zone of the longest prefix
 * of that generation covering it (ZW_AIF_INHERITED when that is a shorter
 * one), or absent (ZW_ZONE_NONE: the world) when none covers it. */
struct zw_cidr_key {
	__u32 prefixlen;	/* host (LPM convention) */
	__u8 addr[16];		/* net */
};

/* ---- conntrack ----
 * One entry serves both directions: the key is canonical, the side with the
 * lower (address, port) first, so one lookup finds a packet's flow either
 * way; ZW_CTF_SWAPPED says the originator is the key's daddr side. */
struct zw_ct_key {
	__u8 saddr[16];		/* net, original direction */
	__u8 daddr[16];		/* net */
	__u16 sport;		/* net; ICMP echo: identifier */
	__u16 dport;		/* net; ICMP echo: identifier */
	__u8 proto;
	__u8 pad0[3];
};

/* Conntrack is a hash (not LRU): a full table refuses new flows instead of
 * evicting live ones. Each entry is charged to the endpoint whose hook
 * created it (owner, counted in zw_ct_count); whoever deletes an entry
 * (the datapath on expiry or revocation, the controller's sweep) uncharges
 * it, so a VM's count is exact and its limit holds whatever it floods. */
#define ZW_CTF_AUDIT		0x01	/* flow passes only because of audit */
#define ZW_CTF_OWNED		0x02	/* charged to endpoint `owner` */
#define ZW_CTF_SWAPPED		0x04	/* the key is the flow's reply direction */
#define ZW_CTF_FIN		0x08	/* TCP: a FIN was seen (closing) */
#define ZW_CTF_RST		0x10	/* TCP: a RST was seen (closed) */

struct zw_ct_entry {
	__u64 created_ns;	/* host, bpf_ktime_get_ns */
	__u64 last_seen_ns;	/* host, refreshed at most every ZW_CT_REFRESH_NS */
	__u32 gen;		/* host: generation whose policy allowed it */
	__u32 rule_id;		/* host */
	__u16 policy_port;	/* host: port or ICMP type the policy judged */
	__u8 flags;		/* ZW_CTF_* */
	__u8 pad0;
	__u32 owner;		/* host: endpoint id charged for it (ZW_CTF_OWNED) */
	/* Established fast path: the VM interfaces that sent and received the
	 * first packet (0: not a VM interface, or unknown). A packet of the flow
	 * on the interface its direction belongs to was checked for spoofing
	 * when the flow was created in this generation, so it is not again. */
	__u32 src_if;		/* host */
	__u32 dst_if;		/* host */
	__u16 src_zone;		/* host: zones of the original direction, */
	__u16 dst_zone;		/* for events and the zone-pair counters */
	__u32 zp_slot;		/* host: zw_st_zpair slot of (src_zone, dst_zone) */
};

/* Flows charged to one endpoint (index: endpoint id); BPF_F_MMAPABLE so the
 * controller's sweep uncharges with an atomic subtract. */
struct zw_ct_usage {
	__u32 flows;		/* host */
	__u32 pad0;
};

#define ZW_CT_REFRESH_NS	1000000000ULL
#define ZW_CT_TIMEOUT_TCP_NS	(3600ULL * 1000000000ULL)
#define ZW_CT_TIMEOUT_UDP_NS	(120ULL * 1000000000ULL)
#define ZW_CT_TIMEOUT_ICMP_NS	(30ULL * 1000000000ULL)
#define ZW_CT_TIMEOUT_OTHER_NS	(120ULL * 1000000000ULL)
#define ZW_CT_TIMEOUT_FIN_NS	(120ULL * 1000000000ULL)	/* TCP after a FIN */
#define ZW_CT_TIMEOUT_RST_NS	(10ULL * 1000000000ULL)		/* TCP after a RST */

/* Idle time after which a flow is gone (the datapath and the sweep agree).
 * A closed TCP connection frees its entry (and its VM's quota) in seconds,
 * not after the established timeout; a new SYN on the tuple reopens it. */
static inline __u64 zw_ct_timeout_ns(__u8 proto, __u8 flags)
{
	if (flags & ZW_CTF_RST)
		return ZW_CT_TIMEOUT_RST_NS;
	if (flags & ZW_CTF_FIN)
		return ZW_CT_TIMEOUT_FIN_NS;
	switch (proto) {
	case 6:		/* TCP */
		return ZW_CT_TIMEOUT_TCP_NS;
	case 17:	/* UDP */
		return ZW_CT_TIMEOUT_UDP_NS;
	case 1:		/* ICMP */
	case 58:	/* ICMPv6 */
		return ZW_CT_TIMEOUT_ICMP_NS;
	default:
		return ZW_CT_TIMEOUT_OTHER_NS;
	}
}

/* ---- config: one entry, BPF_F_MMAPABLE so active_gen flips with one
 * atomic store from user space ---- */
struct zw_config {
	__u32 active_gen;	/* host: 0 = no policy yet, everything dropped */
	__u32 ct_epoch;		/* host: bumped by the controller after it deleted
				 * flows (the sweep): cached established answers of
				 * an older epoch are not used (zw_flow_cache_ent) */
	/* The defaults' verdicts, per generation parity ([gen & 1]), [0]
	 * intra-zone, [1] inter-zone: written before the flip of their
	 * generation (two live generations never share a parity). All zero
	 * (never written) denies. */
	struct zw_verdict dflt[2][2];
	__u32 ev_rate;		/* host: events/s per endpoint, 0 = ZW_EV_RATE_DEFAULT */
	__u32 ev_burst;		/* host: bucket depth, 0 = ZW_EV_BURST_DEFAULT */
	__u64 pad1[2];
};

/* ---- run modes: load-time knob zw_cfg_run_mode (rodata), production 0 ----
 * A variant loaded for BPF_PROG_TEST_RUN only (`trace`, `test`), never
 * attached and never pinned over the production programs. */
#define ZW_RUN_DRY		0x01	/* no side effects: no conntrack create/update/
					 * delete, no counters, no events */
#define ZW_RUN_VERDICT		0x02	/* return ZW_VERDICT_ENCODE(rule, reason)
					 * instead of pass/drop; the tc programs take
					 * the interface from __sk_buff.cb[0] when it
					 * is not 0 (synthetic ifindexes) */
#define ZW_VERDICT_ENCODE(rule, reason)	(((__u32)(rule) << 8) | ((__u32)(reason) & 0xff))
#define ZW_VERDICT_RULE(rv)		((__u32)(rv) >> 8)
#define ZW_VERDICT_REASON(rv)		((__u32)(rv) & 0xff)

/* ---- reasons: why a packet left the way it did (single exit) ---- */
enum zw_reason {
	ZW_R_PASS_NEW = 0,	/* new flow allowed by policy */
	ZW_R_PASS_CT,		/* established flow or reply */
	ZW_R_PASS_RELATED,	/* ICMP error for a tracked flow */
	ZW_R_PASS_ARP,
	ZW_R_PASS_ND,		/* IPv6 neighbour discovery / MLD */
	ZW_R_PASS_AUDIT,	/* would be dropped; zone or rule in audit mode */
	ZW_R_PASS_DHCP,		/* DHCP/DHCPv6 client exchange, whatever the policy */
	ZW_R_PASS_MCAST,	/* multicast/broadcast the policy allows, judged per packet */
	ZW_R_DROP_POLICY,	/* denied by a rule or a default; first drop reason */
	ZW_R_DROP_REVOKED,	/* tracked flow no longer allowed after apply */
	ZW_R_DROP_NO_ENDPOINT,	/* attached interface without endpoint */
	ZW_R_DROP_NO_POLICY,	/* no active generation */
	ZW_R_DROP_MALFORMED,	/* truncated or invalid headers */
	ZW_R_DROP_FRAGMENT,	/* IPv4 fragment or IPv6 fragment header */
	ZW_R_DROP_VLAN,		/* 802.1Q / 802.1ad tagged frame */
	ZW_R_DROP_ETHERTYPE,	/* not IPv4, IPv6 or ARP */
	ZW_R_DROP_IPV6_EXT,	/* extension header chain beyond ZW_MAX_IPV6_EXT */
	ZW_R_DROP_ICMP_UNRELATED, /* ICMP error for no tracked flow */
	ZW_R_DROP_SPOOF_MAC,	/* from the VM with a source MAC not its own */
	ZW_R_DROP_SPOOF_IP,	/* from the VM with a source address not its own */
	ZW_R_DROP_SPOOF_ARP,	/* ARP claiming another MAC or address */
	ZW_R_DROP_GUEST_DHCP,	/* DHCP/DHCPv6 server message from a VM */
	ZW_R_DROP_GUEST_RA,	/* IPv6 router advertisement from a VM */
	ZW_R_DROP_TCP_NO_SYN,	/* TCP without a tracked flow that is not a SYN */
	ZW_R_DROP_NO_ADDRESS,	/* the VM's addresses are not known yet: only DHCP/ARP/ND */
	ZW_R_DROP_SPOOF_ND,	/* neighbour discovery claiming another address or MAC */
	ZW_R_DROP_NOT_FOR_VM,	/* to the VM, for a unicast address that is not its own */
	ZW_R_DROP_CT_LIMIT,	/* new flow beyond the VM interface's conntrack limit */
	ZW_R_DROP_CT_FULL,	/* new flow, conntrack table full */
	ZW_R_MAX,
};
#define ZW_R_FIRST_DROP		ZW_R_DROP_POLICY

#define ZW_MAX_IPV6_EXT		8	/* extension headers walked before a drop */

struct zw_counter {
	__u64 packets;		/* host */
	__u64 bytes;		/* host */
};

struct zw_rule_stats {
	__u64 packets;		/* host */
	__u64 bytes;		/* host */
	__u64 last_hit_ns;	/* host, bpf_ktime_get_ns */
	__u64 audit_packets;	/* host: of packets, passed only by audit mode */
};

/* Per endpoint id (zw_st_ep index), per CPU. */
struct zw_ep_stats {
	struct zw_counter from_vm_pass;
	struct zw_counter from_vm_drop;
	struct zw_counter to_vm_pass;
	struct zw_counter to_vm_drop;
};

/* ---- zone pairs: packets per (source zone, destination zone) of the flow
 * (replies count on their flow's pair), per CPU ---- */
struct zw_zp_stats_key {
	__u16 src_zone;		/* host */
	__u16 dst_zone;		/* host */
};

struct zw_zp_stats {
	struct zw_counter pass;
	struct zw_counter drop;
	struct zw_counter audit;	/* passed only because of audit mode */
};

/* Zone pairs get a counter slot (zw_zp_index) the first time one of their
 * packets is counted; a flow keeps its pair's slot, so its packets count
 * with an array lookup. Slots are never reused; once ZW_MAX_ZP_STATS - 1
 * pairs have one, the others share slot ZW_ZP_OTHER. */
#define ZW_ZP_OTHER		0
#define ZW_ZP_NONE		0xffffffffU	/* no slot (yet): look it up */

struct zw_zp_alloc {
	__u32 next;		/* host: the last slot taken (a hint; zw_zp_claim decides) */
	__u32 pad0;
};

/* ---- endpoint cache: per CPU, direct-mapped by ifindex, a copy of the
 * interface's endpoint tagged with its generation. A generation's endpoint
 * slot never changes while it is live (an apply writes the other slot and
 * settles this one only after the flip away from it), so a copy whose gen
 * is the active one is exact; anything else is a miss and the zw_endpoints
 * lookup refills it. ---- */
#define ZW_EP_CACHE_SLOTS	2048	/* power of two */

struct zw_ep_cache_ent {
	__u32 ifindex;		/* host */
	__u32 gen;		/* host: 0 = empty */
	struct zw_endpoint ep;
};

/* ---- flow cache: per CPU, direct-mapped by a hash of (tuple, interface,
 * hook), the established fast path's recent answers, so a packet of a
 * tracked TCP/UDP flow costs an array lookup instead of a conntrack hash
 * lookup. An entry is filled from a conntrack hit that passed the fast path
 * (flow of the live generation, on the interface its direction belongs to)
 * and answers for less than ZW_FC_VALID_JIFFIES after that hit (jiffies:
 * read without a helper call; 0.1 s at HZ 1000, 1 s at HZ 100). It is
 * exact:
 * - a new generation misses (gen), and only a new generation re-judges a
 *   flow or changes its interfaces, zones, rule or audit flag;
 * - the conntrack lookup that filled it left last_seen_ns no older than
 *   ZW_CT_REFRESH_NS (1 s), so the flow cannot expire (shortest timeout:
 *   10 s after a RST, more than 1 s + the validity at any HZ >= 100) nor be
 *   swept (idle only) while the entry answers; after that the conntrack
 *   lookup runs again, refreshing the flow;
 * - the controller bumps zw_config.ct_epoch after deleting flows, and an
 *   entry of another epoch misses, whatever the reason it deleted them;
 * - TCP segments with SYN, FIN or RST (the only ones that change a flow),
 *   ICMP (echo direction) and everything the fast path does not take never
 *   use it; the source MAC is checked before it.
 * Never pinned: each program instance has its own. A guest can only evict
 * entries of its CPU (cost, never a verdict). ---- */
#define ZW_FLOW_CACHE_SLOTS	4096	/* per CPU, power of two */
#define ZW_FC_VALID_JIFFIES	100	/* an entry's answers after its conntrack hit */

struct zw_flow_cache_ent {
	struct zw_ct_key tuple;	/* the packet's tuple as seen (not canonical) */
	__u32 ifindex;		/* host: the interface the hook runs on */
	__u32 gen;		/* host: generation of the hit; 0 = empty */
	__u64 checked_jiffies;	/* host: when conntrack last answered for it */
	__u32 ct_epoch;		/* host: zw_config.ct_epoch when it did */
	__u32 pad1;
	__u32 rule_id;		/* host */
	__u32 zp_slot;		/* host */
	__u16 src_zone;		/* host */
	__u16 dst_zone;		/* host */
	__u8 hook;		/* enum zw_hook */
	__u8 reason;		/* ZW_R_PASS_CT or ZW_R_PASS_AUDIT */
	__u8 pad0[2];
};

/* ---- denied-packet cache: per CPU, direct-mapped by a hash of the key,
 * policy denials of packets without a flow, so a repeated denied packet
 * costs a conntrack miss and an array lookup instead of the address,
 * ownership and policy lookups; remembering one is a few stores (an LRU
 * hash insert cost 190-300 ns here, more than judging the packet). Exact:
 * a hit stands for the same verdict only when everything the slow path read
 * is the same — the interface (so its endpoint), the generation, both
 * addresses, the protocol and the policy port; the MAC, DHCP ports, ICMP
 * errors, multicast and TCP flags (only a SYN reaches the policy) are
 * checked before the cache is asked, and conntrack is asked first (a flow
 * answers before any cached denial). Never pinned: each program instance
 * has its own. A guest sending denied packets to ever new destinations
 * only overwrites slots of its CPU: cost, never a verdict. ---- */
#define ZW_DENY_CACHE_SLOTS	4096	/* per CPU, power of two */

struct zw_deny_key {
	__u8 saddr[16];		/* net */
	__u8 daddr[16];		/* net */
	__u32 ifindex;		/* host */
	__u16 port;		/* host: the policy port (dport or ICMP type) */
	__u8 proto;
	__u8 hook;		/* enum zw_hook */
};

struct zw_deny_val {
	__u32 gen;		/* host: the generation that denied it; 0 = empty */
	__u32 rule_id;		/* host */
	__u16 src_zone;		/* host */
	__u16 dst_zone;		/* host */
	__u32 zp_slot;		/* host */
	__u8 vflags;		/* ZW_VF_* */
	__u8 born_ok;		/* 1: born and sport are valid (TCP/UDP, see zw_ct_born) */
	__u16 sport;		/* net: the source port of the packet judged */
	__u32 born;		/* host: zw_ct_born of its tuple, read before its conntrack miss */
};

struct zw_deny_cache_ent {
	struct zw_deny_key key;
	struct zw_deny_val val;
};

/* ---- flow births and live flows: per bucket of tuples (a hash of the
 * tuple that is the same in both directions), one 64-bit word: how many
 * flows have been created there (high half, zw_ctb_born) and how many of
 * them are in zw_ct now (low half, zw_ctb_live). The datapath adds
 * ZW_CTB_ONE_FLOW with one atomic after each conntrack insert (the
 * controller never creates flows); whoever deletes a flow (the datapath, the
 * sweep) takes one off the live half after its delete succeeded.
 * - Births: a denied packet's cache entry keeps the births read before the
 *   conntrack lookup that found no flow for it: while they are the same, no
 *   flow of that tuple was created since, so the same packet again is denied
 *   without a conntrack lookup.
 * - Live: no live flow in the bucket means no flow for the tuple, so the
 *   conntrack lookup is skipped (a miss in a table of 1,048,576 buckets is a
 *   cache miss to memory: 100-200 ns). Safe in both directions: a live half
 *   too high (a lost decrement) costs a lookup; one too low could hide a
 *   flow, so it is only ever lowered after a successful delete, and a
 *   decrement of a zero live half (never expected) borrows from the births,
 *   which only drops cached denials, and leaves the live half non-zero.
 * Pinned, shared by every program instance, BPF_F_MMAPABLE so the sweep's
 * decrements are atomics on the word. ---- */
#define ZW_CT_BORN_SLOTS	65536	/* power of two */
#define ZW_CTB_ONE_FLOW		((1ULL << 32) | 1)	/* one birth, one live flow */

static inline __u32 zw_ctb_born(__u64 w)
{
	return (__u32)(w >> 32);
}

static inline __u32 zw_ctb_live(__u64 w)
{
	return (__u32)w;
}

/* The bucket of a tuple, from its words: addresses as the four native
 * 64-bit words of a zw_ct_key's saddr and daddr, ports as they lie in the
 * key (network order, read as native 16-bit values). The same for both
 * directions, so for a packet and for its flow's canonical key, and the same
 * in the datapath and the controller (tests/datapath check they agree). */
static inline __u32 zw_born_slot(__u64 s0, __u64 s1, __u64 d0, __u64 d1, __u16 sport,
				 __u16 dport, __u8 proto)
{
	const __u64 mul = 0x9E3779B97F4A7C15ULL;
	__u64 h = ((s0 ^ s1 ^ sport) * mul) + ((d0 ^ d1 ^ dport) * mul);

	h = (h ^ proto) * mul;
	return (__u32)(h >> (64 - 16));
}

/* ---- events: denied packets and new flows, through the zw_events ring
 * buffer, rate-limited per endpoint by a token bucket ---- */
#define ZW_EV_RATE_DEFAULT	100	/* events per second per endpoint */
#define ZW_EV_BURST_DEFAULT	200
#define ZW_EV_RATE_MAX		1000000
#define ZW_EV_SLOT_NONE		ZW_MAX_ENDPOINTS	/* packets of no endpoint */
#define ZW_EV_SLOTS		(ZW_MAX_ENDPOINTS + 1)

#define ZW_EVF_ARP		0x01	/* ARP: saddr is the sender (IPv4-mapped) */

struct zw_event {
	__u64 ts_ns;		/* host, bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u8 saddr[16];		/* net, IPv4-mapped for IPv4; zero if not IP */
	__u8 daddr[16];		/* net */
	__u16 sport;		/* net; ICMP echo: identifier */
	__u16 dport;		/* net; ICMP echo: identifier */
	__u32 ifindex;		/* host: the interface the hook runs on */
	__u32 ep_id;		/* host: zw_st_ep index, ZW_EV_SLOT_NONE if none */
	__u32 rule_id;		/* host: ZW_RULE_NONE when no rule decided */
	__u32 len;		/* host: packet length */
	__u32 gen;		/* host: active generation, 0 if none */
	__u16 src_zone;		/* host: ZW_ZONE_NONE when not judged */
	__u16 dst_zone;		/* host */
	__u8 proto;		/* IP protocol */
	__u8 hook;		/* enum zw_hook (bpf/lib/stats.h) */
	__u8 reason;		/* enum zw_reason */
	__u8 icmp_type;		/* ICMP/ICMPv6 type when proto is one */
	__u8 flags;		/* ZW_EVF_* */
	__u8 pad0[7];
};

/* Token bucket per endpoint slot (shared by all CPUs: concurrent refills
 * may race, which only ever costs or gains a token). */
struct zw_ev_bucket {
	__u64 tokens;		/* host: events * 1e9 */
	__u64 last_ns;		/* host, bpf_ktime_get_ns of the last refill */
};

/* Per endpoint slot, per CPU. */
struct zw_ev_stats {
	__u64 emitted;		/* written to the ring buffer */
	__u64 suppressed;	/* over the endpoint's rate */
	__u64 lost;		/* ring buffer full (reader too slow) */
	__u64 pad0;
};

ZW_STATIC_ASSERT(sizeof(struct zw_policy_key) == 12, "zw_policy_key layout");
ZW_STATIC_ASSERT(sizeof(struct zw_verdict) == 8, "zw_verdict layout");
ZW_STATIC_ASSERT(sizeof(struct zw_policy_val) == 16, "zw_policy_val layout");
ZW_STATIC_ASSERT(sizeof(struct zw_endpoint_key) == 4, "zw_endpoint_key layout");
ZW_STATIC_ASSERT(sizeof(struct zw_endpoint) == 24, "zw_endpoint layout");
ZW_STATIC_ASSERT(sizeof(struct zw_endpoint_val) == 48, "zw_endpoint_val layout");
ZW_STATIC_ASSERT(sizeof(struct zw_addr_key) == 16, "zw_addr_key layout");
ZW_STATIC_ASSERT(sizeof(struct zw_addr_info) == 8, "zw_addr_info layout");
ZW_STATIC_ASSERT(sizeof(struct zw_addr_val) == 16, "zw_addr_val layout");
ZW_STATIC_ASSERT(sizeof(struct zw_pair_key) == 20, "zw_pair_key layout");
ZW_STATIC_ASSERT(sizeof(struct zw_cidr_key) == 20, "zw_cidr_key layout");
ZW_STATIC_ASSERT(sizeof(struct zw_ct_key) == 40, "zw_ct_key layout");
ZW_STATIC_ASSERT(sizeof(struct zw_ct_entry) == 48, "zw_ct_entry layout");
ZW_STATIC_ASSERT(sizeof(struct zw_zpair_key) == 4, "zw_zpair_key layout");
ZW_STATIC_ASSERT(sizeof(struct zw_zpair) == 4, "zw_zpair layout");
ZW_STATIC_ASSERT(sizeof(struct zw_ct_usage) == 8, "zw_ct_usage layout");
ZW_STATIC_ASSERT(sizeof(struct zw_config) == 64, "zw_config layout");
ZW_STATIC_ASSERT(sizeof(struct zw_ep_stats) == 64, "zw_ep_stats layout");
ZW_STATIC_ASSERT(ZW_R_MAX <= 256, "reasons fit the verdict encoding");
ZW_STATIC_ASSERT(sizeof(struct zw_zp_stats_key) == 4, "zw_zp_stats_key layout");
ZW_STATIC_ASSERT(sizeof(struct zw_zp_stats) == 48, "zw_zp_stats layout");
ZW_STATIC_ASSERT(sizeof(struct zw_zp_alloc) == 8, "zw_zp_alloc layout");
ZW_STATIC_ASSERT(sizeof(struct zw_ep_cache_ent) == 32, "zw_ep_cache_ent layout");
ZW_STATIC_ASSERT(sizeof(struct zw_flow_cache_ent) == 80, "zw_flow_cache_ent layout");
ZW_STATIC_ASSERT((ZW_FLOW_CACHE_SLOTS & (ZW_FLOW_CACHE_SLOTS - 1)) == 0, "flow cache slots: power of two");
ZW_STATIC_ASSERT(sizeof(struct zw_deny_key) == 40, "zw_deny_key layout");
ZW_STATIC_ASSERT(sizeof(struct zw_deny_val) == 24, "zw_deny_val layout");
ZW_STATIC_ASSERT(ZW_CT_BORN_SLOTS == 1 << 16, "born slots: zw_born_slot gives 16 bits");
ZW_STATIC_ASSERT(sizeof(struct zw_deny_cache_ent) == 64, "zw_deny_cache_ent layout");
ZW_STATIC_ASSERT((ZW_DENY_CACHE_SLOTS & (ZW_DENY_CACHE_SLOTS - 1)) == 0, "deny cache slots: power of two");
ZW_STATIC_ASSERT((ZW_EP_CACHE_SLOTS & (ZW_EP_CACHE_SLOTS - 1)) == 0, "cache slots: power of two");
ZW_STATIC_ASSERT(sizeof(struct zw_event) == 80, "zw_event layout");
ZW_STATIC_ASSERT(sizeof(struct zw_ev_bucket) == 16, "zw_ev_bucket layout");
ZW_STATIC_ASSERT(sizeof(struct zw_ev_stats) == 32, "zw_ev_stats layout");

#endif /* ZONEWALL_ABI_ZONEWALL_H */
