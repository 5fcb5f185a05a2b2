// SPDX-License-Identifier: GPL-2.0
// A program the verifier rejects at an instruction that is not the first of its source line: the
// line first calls a helper, then reads a map value it never checked for NULL.
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
int unchecked_after_call(void *ctx)
{
	__u32 zero = 0;
	__u64 *value = bpf_map_lookup_elem(&values, &zero);
	return bpf_get_prandom_u32() + *value == 42;
}
