// SPDX-License-Identifier: GPL-2.0
// A long program the verifier rejects at its end: its log is far larger than one print buffer.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int long_then_unchecked(void *ctx)
{
	__u64 acc = bpf_get_prandom_u32();
#pragma unroll
	for (int i = 0; i < 300; i++)
		acc ^= (__u64)bpf_get_prandom_u32() << (i % 32);
	__u32 key = acc;
	__u64 *value = bpf_map_lookup_elem(&values, &key);
	return *value == acc;
}
