/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * USDT arguments for programs attached with @triad/ebpf's Program.attachUsdt(): include this
 * after vmlinux.h and bpf_helpers.h, attach with SEC("usdt"), and read argument N (from 0) with
 * triad_usdt_arg(ctx, N, &value). The loader writes each probe site's argument specs into
 * triad_usdt_specs and gives the site's uprobe the spec's index as its attach cookie.
 */
#ifndef TRIAD_USDT_BPF_H
#define TRIAD_USDT_BPF_H

#define TRIAD_USDT_MAX_ARGS 12

struct triad_usdt_arg {
	__s64 value;    /* the constant, or the offset from the register */
	__u32 kind;     /* 1 constant, 2 register, 3 memory at register + value */
	__u16 reg;      /* byte offset of the register in struct pt_regs */
	__s8 size;      /* bytes, negative when signed */
	__u8 pad;
};

struct triad_usdt_spec {
	__u32 count;
	__u32 pad;
	struct triad_usdt_arg args[TRIAD_USDT_MAX_ARGS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct triad_usdt_spec);
} triad_usdt_specs SEC(".maps");

/* Reads argument n of the probe site that fired; returns 0, or -1 when there is no such one. */
static __always_inline int triad_usdt_arg(struct pt_regs *ctx, __u32 n, long *out)
{
	__u32 id = bpf_get_attach_cookie(ctx);
	struct triad_usdt_spec *spec = bpf_map_lookup_elem(&triad_usdt_specs, &id);
	__u64 value = 0, base = 0;
	if (!spec || n >= spec->count || n >= TRIAD_USDT_MAX_ARGS)
		return -1;
	struct triad_usdt_arg *arg = &spec->args[n];
	switch (arg->kind) {
	case 1:
		value = arg->value;
		break;
	case 2:
		if (bpf_probe_read_kernel(&value, sizeof(value), (void *)ctx + arg->reg))
			return -1;
		break;
	case 3:
		if (bpf_probe_read_kernel(&base, sizeof(base), (void *)ctx + arg->reg))
			return -1;
		if (bpf_probe_read_user(&value, sizeof(value), (void *)(base + arg->value)))
			return -1;
		break;
	default:
		return -1;
	}
	/* Keep the argument's bytes only, extending its sign when it is signed. */
	int size = arg->size < 0 ? -arg->size : arg->size;
	int shift = 64 - 8 * (size & 15);
	if (shift > 0 && shift < 64) {
		value <<= shift;
		*out = arg->size < 0 ? (long)((__s64)value >> shift) : (long)(value >> shift);
	} else {
		*out = (long)value;
	}
	return 0;
}

#endif
