// SPDX-License-Identifier: GPL-2.0
// Test programs for @triad/ebpf: a syscall tracepoint emitting ring buffer and perf records,
// a raw tracepoint counting into maps, and a program the verifier rejects (not autoloaded).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

enum event_kind { EVENT_GETPPID = 1, EVENT_OTHER = 2 };

struct event {
	__u32 pid;
	__u32 tgid;
	__u64 seq;
	__s64 delta;
	char comm[16];
	enum event_kind kind;
	__u8 flags;
	__u16 port;
};

// Anchor: makes bpf2ts emit a decoder for struct event.
const struct event *unused_event __attribute__((unused));

const volatile __u32 target_tgid = 0;
const volatile __u64 marker = 0;
__u64 emitted = 0;
__u64 dropped = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} percpu_hits SEC(".maps");

struct config {
	__u32 mode;
	__u32 limit;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} settings SEC(".maps");

SEC("tp/syscalls/sys_enter_getppid")
int handle_getppid(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (target_tgid != 0 && tgid != target_tgid)
		return 0;

	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&settings, &zero);
	__u64 seq = __sync_fetch_and_add(&emitted, 1);

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e->pid = (__u32)id;
	e->tgid = tgid;
	e->seq = seq;
	e->delta = -(__s64)seq;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->kind = EVENT_GETPPID;
	e->flags = cfg ? cfg->mode : 0;
	e->port = marker & 0xffff;
	bpf_ringbuf_submit(e, 0);

	if (cfg && cfg->mode == 2) {
		// 60 bytes of data make 72-byte perf records, which do not divide the ring: some
		// records wrap around its end, and the reader must stitch them together.
		struct {
			struct event e;
			__u8 tail[12];
		} copy = {};
		copy.e.pid = (__u32)id;
		copy.e.tgid = tgid;
		copy.e.seq = seq;
		copy.e.kind = EVENT_OTHER;
		copy.tail[11] = 0xee;
		bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &copy, 60);
	}
	return 0;
}

SEC("raw_tp/sys_enter")
int count_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (target_tgid == 0 || tgid != target_tgid)
		return 0;
	__u64 one = 1, *count = bpf_map_lookup_elem(&counts, &tgid);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&counts, &tgid, &one, BPF_NOEXIST);
	__u32 slot = 0;
	__u64 *hits = bpf_map_lookup_elem(&percpu_hits, &slot);
	if (hits)
		*hits += 1;
	return 0;
}
