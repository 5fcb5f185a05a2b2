// SPDX-License-Identifier: GPL-2.0
// Test programs for @triad/ebpf map-in-map: an ARRAY_OF_MAPS and a HASH_OF_MAPS whose inner
// maps are defined in BTF (`__array(values, ...)`); a getppid tracepoint counts into the inner
// map that slot 0 (and this process's tgid) selects, so swapping an inner map from TypeScript
// redirects the counting.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
};

struct inner inner_a SEC(".maps");
struct inner inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} by_slot SEC(".maps") = {
	.values = { [0] = &inner_a },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 8);
	__type(key, __u32);
	__array(values, struct inner);
} by_tgid SEC(".maps");

static void count(void *outer, __u32 key)
{
	__u32 zero = 0;
	void *inner = bpf_map_lookup_elem(outer, &key);
	if (!inner)
		return;
	__u64 *value = bpf_map_lookup_elem(inner, &zero);
	if (value)
		__sync_fetch_and_add(value, 1);
}

SEC("tp/syscalls/sys_enter_getppid")
int handle_getppid(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid != target_tgid)
		return 0;
	count(&by_slot, 0);
	count(&by_tgid, tgid);
	return 0;
}
