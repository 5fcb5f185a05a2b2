// SPDX-License-Identifier: GPL-2.0
// Test programs for @triad/ebpf iterators (bpf_iter): every task as a line of text, every TCP
// socket as a binary record, and every element of a hash map as a line.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

/** One TCP socket as the tcp iterator writes it (addresses in network order). */
struct tcp_socket {
	__u16 family;
	__u8 state;
	__u8 pad;
	__u16 local_port;
	__u16 remote_port;
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u32 uid;
	__u32 pad2;
};

// Anchor: makes bpf2ts emit a decoder for struct tcp_socket.
const struct tcp_socket *unused_tcp_socket __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} numbers SEC(".maps");

SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	if (!task)
		return 0;
	// One line per thread group: its leader.
	if (task->pid != task->tgid)
		return 0;
	BPF_SEQ_PRINTF(seq, "%d %s\n", task->tgid, task->comm);
	return 0;
}

SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_socket out = {};
	if (!skc)
		return 0;
	out.family = skc->skc_family;
	out.state = skc->skc_state;
	out.local_port = skc->skc_num;
	out.remote_port = bpf_ntohs(skc->skc_dport);
	out.uid = ctx->uid;
	if (out.family == AF_INET) {
		__builtin_memcpy(out.local_addr, &skc->skc_rcv_saddr, 4);
		__builtin_memcpy(out.remote_addr, &skc->skc_daddr, 4);
	} else if (out.family == AF_INET6) {
		__builtin_memcpy(out.local_addr, skc->skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(out.remote_addr, skc->skc_v6_daddr.in6_u.u6_addr8, 16);
	} else {
		return 0;
	}
	bpf_seq_write(ctx->meta->seq, &out, sizeof(out));
	return 0;
}

SEC("iter/bpf_map_elem")
int dump_numbers(struct bpf_iter__bpf_map_elem *ctx)
{
	__u32 *key = ctx->key;
	__u64 *value = ctx->value;
	if (!key || !value)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u=%llu\n", *key, *value);
	return 0;
}
