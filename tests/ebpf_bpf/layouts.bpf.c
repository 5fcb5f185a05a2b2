// SPDX-License-Identifier: GPL-2.0
// A struct with every layout bpf2ts decodes (bit-fields, an anonymous union, nested structs,
// arrays, bool, enum, char[], u64), filled by a program with known values.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

enum shade { SHADE_LIGHT = 1, SHADE_DARK = 7 };

struct inner {
	__u16 a;
	__u8 b[3];
};

struct layout {
	__u32 id;
	__u32 low : 4, mid : 12, high : 16;
	union {
		__u32 as_u32;
		__u8 as_bytes[4];
	};
	struct inner nested;
	struct inner list[2];
	__s16 temps[3];
	bool flag;
	enum shade shade;
	char name[8];
	__u64 big;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct layout);
} layouts SEC(".maps");

const volatile __u32 target_tgid = 0;

SEC("tp/syscalls/sys_enter_getppid")
int fill_layout(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	__u32 zero = 0;
	struct layout *l = bpf_map_lookup_elem(&layouts, &zero);
	if (!l)
		return 0;
	l->id = 0xdeadbeef;
	l->low = 9;
	l->mid = 0xabc;
	l->high = 0x1234;
	l->as_u32 = 0x04030201;
	l->nested.a = 513;
	l->nested.b[0] = 1;
	l->nested.b[1] = 2;
	l->nested.b[2] = 3;
	l->list[1].a = 7;
	l->list[1].b[2] = 9;
	l->temps[0] = -40;
	l->temps[2] = 125;
	l->flag = true;
	l->shade = SHADE_DARK;
	__builtin_memcpy(l->name, "kernel", 7);
	l->big = 0xfedcba9876543210ULL;
	return 0;
}
