// SPDX-License-Identifier: GPL-2.0
// `deno task trace --snapshot`: a TCP iterator (bpf_iter, kernel 5.9+) that writes every TCP
// socket that exists when it runs as one binary record, so the tracer lists the connections
// opened before it started.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

/** One TCP socket (addresses in network order, ports in host order). */
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

SEC("iter/tcp")
int list_tcp(struct bpf_iter__tcp *ctx)
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
