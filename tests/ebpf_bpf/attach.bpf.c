// SPDX-License-Identifier: GPL-2.0
// Test programs for every attach kind: each counts hits in `hits`, keyed by attach kind.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800 /* a macro, so not in vmlinux.h */

char LICENSE[] SEC("license") = "GPL";

enum hit_kind {
	HIT_FENTRY = 0,
	HIT_KPROBE = 1,
	HIT_UPROBE = 2,
	HIT_CGROUP = 3,
	HIT_XDP = 4,
	HIT_TC = 5,
	HIT_TP_BTF = 6,
};

const volatile __u32 target_tgid = 0;
const volatile __u16 target_port = 9;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

static __always_inline void hit(enum hit_kind kind)
{
	__u32 key = kind;
	__u64 *count = bpf_map_lookup_elem(&hits, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
}

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

SEC("fentry/security_file_open")
int BPF_PROG(on_file_open_fentry, struct file *file)
{
	if (mine())
		hit(HIT_FENTRY);
	return 0;
}

SEC("kprobe/security_file_open")
int BPF_KPROBE(on_file_open_kprobe)
{
	if (mine())
		hit(HIT_KPROBE);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(on_uprobe)
{
	if (mine())
		hit(HIT_UPROBE);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter_btf, struct pt_regs *regs, long id)
{
	if (mine())
		hit(HIT_TP_BTF);
	return 0;
}

// Counts UDP packets to target_port; IPv4 without options only (enough for the tests).
static __always_inline int is_target_udp(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return 0;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return 0;
	return udp->dest == bpf_htons(target_port);
}

SEC("xdp")
int count_xdp(struct xdp_md *ctx)
{
	if (is_target_udp((void *)(long)ctx->data, (void *)(long)ctx->data_end))
		hit(HIT_XDP);
	return XDP_PASS;
}

SEC("tc")
int count_tc(struct __sk_buff *skb)
{
	if (is_target_udp((void *)(long)skb->data, (void *)(long)skb->data_end))
		hit(HIT_TC);
	return 0; // TC_ACT_OK
}

SEC("cgroup_skb/egress")
int count_cgroup_egress(struct __sk_buff *skb)
{
	if (skb->protocol == bpf_htons(ETH_P_IP))
		hit(HIT_CGROUP);
	return 1; // allow
}
