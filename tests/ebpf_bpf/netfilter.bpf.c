// SPDX-License-Identifier: GPL-2.0
// Test program for @triad/ebpf netfilter links (kernel 6.4+): at IPv4 LOCAL_IN, drop TCP
// segments to one port and count them; accept everything else.
// bpf2ts: needs kernel 6.4
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define NF_DROP 0
#define NF_ACCEPT 1

const volatile __u16 blocked_port = 0;
__u64 dropped = 0;
__u64 seen = 0;

SEC("netfilter")
int block_port(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	struct iphdr ip;
	struct tcphdr tcp;
	unsigned char *head = skb->head;
	__u16 network = skb->network_header;
	seen++;
	if (bpf_probe_read_kernel(&ip, sizeof(ip), head + network))
		return NF_ACCEPT;
	if (ip.protocol != IPPROTO_TCP)
		return NF_ACCEPT;
	if (bpf_probe_read_kernel(&tcp, sizeof(tcp), head + network + ip.ihl * 4))
		return NF_ACCEPT;
	if (bpf_ntohs(tcp.dest) != blocked_port)
		return NF_ACCEPT;
	dropped++;
	return NF_DROP;
}
