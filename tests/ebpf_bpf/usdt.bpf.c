// SPDX-License-Identifier: GPL-2.0
// Test program for @triad/ebpf USDT probes: on each triad:step probe (DTRACE_PROBE2 in
// fixtures/multi_target.c) add up both arguments.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "../../ebpf/bpf/usdt.bpf.h"

char LICENSE[] SEC("license") = "GPL";

__u64 hits = 0;
__s64 first_sum = 0;
__s64 second_sum = 0;
__u64 bad_args = 0;

SEC("usdt")
int on_step(struct pt_regs *ctx)
{
	long first, second;
	if (triad_usdt_arg(ctx, 0, &first) || triad_usdt_arg(ctx, 1, &second) ||
	    !triad_usdt_arg(ctx, 2, &second)) {
		bad_args++;
		return 0;
	}
	hits++;
	first_sum += first;
	second_sum += second;
	return 0;
}
