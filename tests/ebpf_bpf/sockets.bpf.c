// SPDX-License-Identifier: GPL-2.0
// Test programs for @triad/ebpf socket programs: sk_lookup steers connections for one port to
// a listener held in a SOCKMAP, an sk_skb stream verdict forwards what one socket receives out of
// another (SOCKMAP), and an sk_msg verdict redirects what one socket sends into another socket's
// receive queue (SOCKHASH).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define BPF_F_INGRESS 1

const volatile __u16 steered_port = 0;
__u64 steered = 0;
__u64 forwarded = 0;
__u64 redirected = 0;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} listener SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} forward_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} redirect_hash SEC(".maps");

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	__u32 zero = 0;
	if (ctx->local_port != steered_port)
		return SK_PASS;
	struct bpf_sock *sk = bpf_map_lookup_elem(&listener, &zero);
	if (!sk)
		return SK_PASS;
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err)
		return SK_DROP;
	steered++;
	return SK_PASS;
}

// What socket 0 of forward_map receives goes out of socket 1.
SEC("sk_skb/stream_verdict")
int forward(struct __sk_buff *skb)
{
	forwarded++;
	return bpf_sk_redirect_map(skb, &forward_map, 1, 0);
}

// What a socket of redirect_hash sends lands in the receive queue of the socket under key 2.
SEC("sk_msg")
int redirect(struct sk_msg_md *msg)
{
	__u32 key = 2;
	redirected++;
	return bpf_msg_redirect_hash(msg, &redirect_hash, &key, BPF_F_INGRESS);
}
