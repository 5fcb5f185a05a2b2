// SPDX-License-Identifier: GPL-2.0
// Test programs for @triad/ebpf multi-attach: one uprobe.multi program (and one kprobe.multi
// program, where kprobes exist) counting calls per attach cookie, and a plain uprobe program for
// the fallback.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} calls SEC(".maps");

static void count(void *ctx)
{
	__u32 key = bpf_get_attach_cookie(ctx);
	__u64 *value = bpf_map_lookup_elem(&calls, &key);
	if (value)
		__sync_fetch_and_add(value, 1);
}

SEC("uprobe.multi")
int count_calls(struct pt_regs *ctx)
{
	count(ctx);
	return 0;
}

// The same as a plain uprobe: a uprobe_multi link is refused for it, so the loader falls back to
// one uprobe per function (what kernels before 6.6 get).
SEC("uprobe")
int count_calls_plain(struct pt_regs *ctx)
{
	count(ctx);
	return 0;
}

SEC("kprobe.multi")
int count_kernel_calls(struct pt_regs *ctx)
{
	count(ctx);
	return 0;
}
