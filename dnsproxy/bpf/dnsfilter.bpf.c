// SPDX-License-Identifier: GPL-2.0
// The DNS proxy's kernel-side filter: drops UDP DNS queries to the proxy's port from blocked
// client prefixes (IPv4/IPv6 LPM tries) or for blocked names (hash of the wire-format suffix),
// and counts drops per rule in a per-CPU array. It parses only Ethernet, up to two VLAN tags,
// IPv4 (no fragments), IPv6 (no extension headers), UDP and the DNS header and question; every
// other packet passes, and TCP is never dropped. The same logic runs as XDP or as a tc program.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define NAME_MAX_BYTES 255
#define MAX_LABELS 16
#define MAX_RULES 256
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/** The UDP port the proxy listens on (network order is handled here). */
const volatile __u16 dns_port = 53;

/** How many names are blocked (user space keeps it): 0 skips the name walk. */
__u32 name_blocks = 0;
/** How many shorter-than-host prefixes are blocked: 0 skips the LPM lookups. */
__u32 prefix_blocks = 0;

/** The value of every block: when it ends (ktime ns, 0 = never) and the rule that made it. */
struct dnsfilter_block {
	__u64 expires_ns;
	__u32 rule;
	__u32 action;
};

struct dnsfilter_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct dnsfilter_host6 {
	__u8 addr[16];
};

struct dnsfilter_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/** Drops per rule. */
struct dnsfilter_counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dnsfilter_v4_key);
	__type(value, struct dnsfilter_block);
} dnsfilter_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dnsfilter_v6_key);
	__type(value, struct dnsfilter_block);
} dnsfilter_v6 SEC(".maps");

/** Single addresses (dynamic blocks, /32 and /128 entries): one hash lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct dnsfilter_block);
} dnsfilter_hosts4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct dnsfilter_host6);
	__type(value, struct dnsfilter_block);
} dnsfilter_hosts6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct dnsfilter_block);
} dnsfilter_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_RULES);
	__type(key, __u32);
	__type(value, struct dnsfilter_counter);
} dnsfilter_drops SEC(".maps");

/** State of the name walk (bpf_loop's context). */
struct name_walk {
	__u8 name[NAME_MAX_BYTES + 1];
	__u64 label_hash[MAX_LABELS];
	__u64 hash;
	__u32 length;
	__u32 pos;
	__u32 left;
	__u32 labels;
	__u32 done;
};

/** One byte of the name: a label length, or a label byte (hashed lower-cased). */
static long walk_byte(__u64 index, void *data)
{
	struct name_walk *walk = data;
	__u32 pos = walk->pos;
	if (pos >= walk->length || pos > NAME_MAX_BYTES)
		return 1; // ran off the packet: not understood
	__u8 c = walk->name[pos & NAME_MAX_BYTES];
	walk->pos = pos + 1;
	if (walk->left == 0) {
		if (walk->labels > 0)
			walk->label_hash[(walk->labels - 1) & (MAX_LABELS - 1)] = walk->hash;
		if (c == 0) {
			walk->done = 1;
			return 1;
		}
		if (c > 63 || walk->labels >= MAX_LABELS)
			return 1; // a compression pointer or too many labels: not understood
		walk->labels++;
		walk->left = c;
		walk->hash = (FNV_OFFSET ^ c) * FNV_PRIME;
		return 0;
	}
	if (c >= 'A' && c <= 'Z')
		c += 'a' - 'A';
	walk->hash = (walk->hash ^ c) * FNV_PRIME;
	walk->left--;
	return 0;
}

/** Combines label hashes from the right: the suffix starting at each label. */
static long walk_suffix(__u64 index, void *data)
{
	struct name_walk *walk = data;
	if (index >= walk->labels)
		return 1;
	__u32 label = walk->labels - 1 - (__u32)index;
	walk->hash = (walk->hash ^ walk->label_hash[label & (MAX_LABELS - 1)]) * FNV_PRIME;
	struct dnsfilter_block *block = bpf_map_lookup_elem(&dnsfilter_names, &walk->hash);
	if (block) {
		walk->done = 2;
		walk->pos = block->rule;
		walk->left = (__u32)(block->expires_ns >> 32);
		walk->length = (__u32)block->expires_ns;
		return 1;
	}
	return 0;
}

static __always_inline void count(__u32 rule, __u64 bytes)
{
	__u32 key = rule;
	struct dnsfilter_counter *counter = bpf_map_lookup_elem(&dnsfilter_drops, &key);
	if (counter) {
		counter->packets++;
		counter->bytes += bytes;
	}
}

/**
 * Whether a block ends at `expires_ns` (0 = never) or later. The clock is read only for a block
 * with an end, and the coarse one (CLOCK_MONOTONIC as of the last tick: no clock source read,
 * a block may outlast its end by up to one tick).
 */
static __always_inline int unexpired(__u64 expires_ns)
{
	return expires_ns == 0 || expires_ns > bpf_ktime_get_coarse_ns();
}

static __always_inline int active(struct dnsfilter_block *block)
{
	return block->action == 0 && unexpired(block->expires_ns);
}

/** Returns 1 to drop. `qname_offset` is where the question starts from `data`. */
static __always_inline int decide(void *data, void *data_end, __u32 *qname_offset)
{
	void *cursor = data;
	struct ethhdr *eth = cursor;
	if ((void *)(eth + 1) > data_end)
		return 0;
	__u16 proto = eth->h_proto;
	cursor = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vlan = cursor;
		if ((void *)(vlan + 1) > data_end)
			return 0;
		proto = vlan->h_vlan_encapsulated_proto;
		cursor = vlan + 1;
	}
	struct dnsfilter_block *block = 0;
	struct udphdr *udp;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor;
		if ((void *)(ip + 1) > data_end || ip->ihl < 5)
			return 0;
		if (ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
			return 0;
		udp = cursor + ip->ihl * 4;
		if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(dns_port))
			return 0;
		__u32 saddr = ip->saddr;
		block = bpf_map_lookup_elem(&dnsfilter_hosts4, &saddr);
		if (!block && prefix_blocks) {
			struct dnsfilter_v4_key key = { .prefixlen = 32 };
			__builtin_memcpy(key.addr, &saddr, 4);
			block = bpf_map_lookup_elem(&dnsfilter_v4, &key);
		}
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor;
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_UDP)
			return 0;
		udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(dns_port))
			return 0;
		struct dnsfilter_host6 saddr;
		__builtin_memcpy(saddr.addr, &ip6->saddr, 16);
		block = bpf_map_lookup_elem(&dnsfilter_hosts6, &saddr);
		if (!block && prefix_blocks) {
			struct dnsfilter_v6_key key = { .prefixlen = 128 };
			__builtin_memcpy(key.addr, &saddr, 16);
			block = bpf_map_lookup_elem(&dnsfilter_v6, &key);
		}
	} else {
		return 0;
	}
	__u64 bytes = data_end - data;
	if (block && active(block)) {
		count(block->rule, bytes);
		return 1;
	}
	// The DNS header: a query (QR 0, opcode QUERY) with one question.
	__u8 *dns = (void *)(udp + 1);
	if ((void *)(dns + 12) > data_end)
		return 0;
	if ((dns[2] & 0xf8) != 0 || dns[4] != 0 || dns[5] != 1)
		return 0;
	*qname_offset = (void *)(dns + 12) - data;
	return -1; // the name decides
}

/** Walks the question name in `walk` (already loaded) and returns 1 to drop. */
static __always_inline int name_blocked(struct name_walk *walk, __u64 bytes)
{
	if (bpf_loop(NAME_MAX_BYTES + 1, walk_byte, walk, 0) < 0 || walk->done != 1)
		return 0;
	walk->hash = FNV_OFFSET;
	walk->done = 0;
	bpf_loop(MAX_LABELS, walk_suffix, walk, 0);
	if (walk->done != 2)
		return 0;
	__u64 expires = ((__u64)walk->left << 32) | walk->length;
	if (!unexpired(expires))
		return 0;
	count(walk->pos, bytes);
	return 1;
}

/** The bytes from the question to the end, 1 to 256 in a way the verifier sees; 0 for none. */
static __always_inline __u32 clamp_length(__u64 bytes, __u32 offset)
{
	if (bytes <= offset)
		return 0;
	__u64 n = bytes - offset - 1;
	if (n > NAME_MAX_BYTES)
		n = NAME_MAX_BYTES;
	asm volatile("%0 &= 0xff" : "+r"(n));
	return n + 1;
}

static __always_inline void walk_init(struct name_walk *walk, __u32 length)
{
	walk->hash = 0;
	walk->length = length;
	walk->pos = 0;
	walk->left = 0;
	walk->labels = 0;
	walk->done = 0;
}

SEC("xdp")
int dnsfilter_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 offset = 0;
	int verdict = decide(data, data_end, &offset);
	if (verdict >= 0)
		return verdict ? XDP_DROP : XDP_PASS;
	if (name_blocks == 0)
		return XDP_PASS;
	__u64 bytes = data_end - data;
	__u32 length = clamp_length(bytes, offset);
	if (length == 0)
		return XDP_PASS;
	struct name_walk walk;
	walk_init(&walk, length);
	if (bpf_xdp_load_bytes(ctx, offset, walk.name, length) < 0)
		return XDP_PASS;
	return name_blocked(&walk, bytes) ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int dnsfilter_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 offset = 0;
	int verdict = decide(data, data_end, &offset);
	if (verdict >= 0)
		return verdict ? TC_ACT_SHOT : TC_ACT_OK;
	if (name_blocks == 0)
		return TC_ACT_OK;
	__u64 bytes = data_end - data;
	__u32 length = clamp_length(bytes, offset);
	if (length == 0)
		return TC_ACT_OK;
	struct name_walk walk;
	walk_init(&walk, length);
	if (bpf_skb_load_bytes(skb, offset, walk.name, length) < 0)
		return TC_ACT_OK;
	return name_blocked(&walk, bytes) ? TC_ACT_SHOT : TC_ACT_OK;
}
