// SPDX-License-Identifier: GPL-2.0
// Ring buffer benchmark producer: every getppid() of the trigger process emits `batch` records.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct record {
	__u64 seq;
	__u64 payload[6];
};

const struct record *unused_record __attribute__((unused));

const volatile __u32 batch = 64;
__u32 target_tgid = 0; // set per round, after the trigger process started
__u64 produced = 0;
__u64 dropped = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} records SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int produce(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	for (__u32 i = 0; i < 256; i++) {
		if (i >= batch)
			break;
		struct record *r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);
		if (!r) {
			dropped++;
			continue;
		}
		r->seq = produced++;
		r->payload[0] = i;
		bpf_ringbuf_submit(r, 0);
	}
	return 0;
}
