// SPDX-License-Identifier: GPL-2.0
// Records of every length for the readers' copy paths: each getppid() of the target process emits
// the first `record_length` bytes of `payload` (filled from TypeScript) into a ring buffer and,
// when `perf` is set, into a perf event array too.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_LENGTH 512

const volatile __u32 target_tgid = 0;
__u32 record_length = 0;
__u32 perf = 0;
__u64 dropped = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[MAX_LENGTH]);
} payload SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} records SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_records SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int emit(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	__u32 zero = 0;
	__u8 *bytes = bpf_map_lookup_elem(&payload, &zero);
	if (!bytes)
		return 0;
	__u32 length = record_length;
	if (length < 1 || length > MAX_LENGTH)
		return 0;
	if (bpf_ringbuf_output(&records, bytes, length, 0))
		__sync_fetch_and_add(&dropped, 1);
	if (perf)
		bpf_perf_event_output(ctx, &perf_records, BPF_F_CURRENT_CPU, bytes, length);
	return 0;
}
