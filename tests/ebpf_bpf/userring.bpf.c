// SPDX-License-Identifier: GPL-2.0
// Test program for @triad/ebpf user ring buffers (BPF_MAP_TYPE_USER_RINGBUF, kernel 6.1+): on
// each getppid of the target process, drain the records TypeScript wrote (one __u64 each) and add
// them up.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;
__u64 total = 0;
__u64 records = 0;
__u64 short_records = 0;
long last_drained = 0;

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096);
} commands SEC(".maps");

static long on_record(struct bpf_dynptr *record, void *ctx)
{
	__u64 value;
	if (bpf_dynptr_read(&value, sizeof(value), record, 0, 0)) {
		short_records++;
		return 0;
	}
	total += value;
	records++;
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int drain_commands(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	last_drained = bpf_user_ringbuf_drain(&commands, on_record, NULL, 0);
	return 0;
}
