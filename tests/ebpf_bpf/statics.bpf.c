// SPDX-License-Identifier: GPL-2.0
// Globals next to what the compiler makes of a function's statics: bpf_printk's format string
// and a static counter are BTF variables named "<function>.<variable>".
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;
__u64 calls = 0;

SEC("tp/syscalls/sys_enter_getppid")
int handle_tp(void *ctx)
{
	static __u64 seen;

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	seen++;
	__sync_fetch_and_add(&calls, 1);
	bpf_printk("getppid %llu", seen);
	return 0;
}
