// SPDX-License-Identifier: GPL-2.0
/*
 * tcptrace: every TCP connection as it opens and closes, for `deno task trace`.
 *
 * Primary hook: the tracepoint sock:inet_sock_set_state (stable since Linux 4.16, IPv4 and IPv6).
 *  - CLOSE -> SYN_SENT runs in connect(): the opener's pid/comm and the open time are remembered.
 *  - LISTEN -> SYN_RECV creates the passive child: the open time is remembered; its owner is not
 *    known yet (this runs in softirq, on loopback even in the client's context).
 *  - SYN_SENT -> ESTABLISHED emits `connect`.
 *  - -> CLOSE emits `close` with the duration and bytes acked/received read from tcp_sock.
 * The accepting process is learned where accept() hands the socket out: fexit/inet_csk_accept
 * where fentry works (it also sees io_uring and in-kernel accepts), otherwise the syscall exit
 * tracepoints of accept/accept4, which resolve the returned fd to its socket. Either emits `accept`.
 *
 * Filters are read-only globals (rodata) set before load, so the verifier prunes what is off.
 * A failed ring buffer reservation counts in the per-CPU `lost` array (slot 0): userspace reports it.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TASK_COMM_LEN 16

/* Event types; userspace maps them to the JSON `type`. */
#define EVENT_CONNECT 1
#define EVENT_ACCEPT 2
#define EVENT_CLOSE 3
#define EVENT_STATE 4

/* The one record the ring buffer carries. Field order keeps it free of padding. */
struct tcptrace_event {
	__u64 time_ns;     /* bpf_ktime_get_boot_ns() when the event happened */
	__u64 duration_ns; /* close: open (SYN_SENT/SYN_RECV) to close */
	__u64 tx_bytes;    /* close: tcp_sock.bytes_acked */
	__u64 rx_bytes;    /* close: tcp_sock.bytes_received */
	__u8 saddr[16];    /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u32 pid;
	__u16 sport;
	__u16 dport;
	__u8 type;
	__u8 family; /* 4 or 6 */
	__u8 oldstate;
	__u8 newstate;
	char comm[TASK_COMM_LEN];
};

/* What is remembered per socket from its open to its close. */
struct sock_info {
	__u64 open_ns;
	__u64 acked_base;    /* bytes_acked when established: the active side's SYN counts there */
	__u64 received_base; /* bytes_received when established */
	__u32 pid; /* 0 until the owner is known (passive sockets before accept) */
	__u8 active;
	__u8 established;
	__u8 accepted;
	__u8 pad;
	char comm[TASK_COMM_LEN];
};

/* Filters (0 / empty = off), set by userspace before load. */
const volatile __u32 filter_pid = 0;
const volatile __u16 filter_port = 0;
const volatile __u8 filter_family = 0; /* 4 or 6 */
const volatile __u8 emit_states = 0;
const volatile char filter_comm[TASK_COMM_LEN] = {};
/* Wake the reader only once this much is queued (0: every record). Below it the reader's own
 * poll interval picks records up: fewer wakeups of the reader and fewer IPIs from the traced. */
const volatile __u32 wakeup_bytes = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} tcptrace_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_info);
} tcptrace_socks SEC(".maps");

/* Slot 0: ring buffer reservations that failed. Slot 1: sockets not tracked (table full). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} tcptrace_lost SEC(".maps");

/* A tracepoint context of syscalls:sys_exit_* (stable layout). */
struct syscall_exit_ctx {
	__u64 common;
	long nr;
	long ret;
};

/* The emitted type, anchored so bpf2ts finds it in BTF and generates its decoder. */
const struct tcptrace_event *unused_tcptrace_event __attribute__((unused));

static __always_inline void count_lost(__u32 slot)
{
	__u64 *count = bpf_map_lookup_elem(&tcptrace_lost, &slot);
	if (count)
		*count += 1;
}

/* The process's name (its main thread's comm), as ps shows it: a runtime's worker threads
 * (tokio-runtime-w, java's threads) make the thread's own comm useless for attribution. */
static __always_inline void process_comm(char *comm)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	if (!leader || bpf_probe_read_kernel_str(comm, TASK_COMM_LEN, &leader->comm) < 0)
		bpf_get_current_comm(comm, TASK_COMM_LEN);
}

static __always_inline bool comm_matches(const char *comm)
{
	if (filter_comm[0] == 0)
		return true;
#pragma unroll
	for (int i = 0; i < TASK_COMM_LEN; i++) {
		if (comm[i] != filter_comm[i])
			return false;
		if (comm[i] == 0)
			return true;
	}
	return true;
}

static __always_inline bool owner_allowed(__u32 pid, const char *comm)
{
	if (filter_pid && pid != filter_pid)
		return false;
	return comm_matches(comm);
}

/* The connection's identity as the tracepoint gives it (ports in host order). */
struct conn {
	__u16 family;
	__u16 sport;
	__u16 dport;
	const __u8 *saddr;
	const __u8 *daddr;
};

static __always_inline bool conn_allowed(const struct conn *c)
{
	if (filter_family && c->family != filter_family)
		return false;
	if (filter_port && c->sport != filter_port && c->dport != filter_port)
		return false;
	return true;
}

/*
 * tcp_sock counts sequence space, and SYN and FIN take one each. Data bytes only:
 * - our FIN was queued if we closed from FIN_WAIT1/FIN_WAIT2/CLOSING/LAST_ACK, and it was acked
 *   if snd_una reached write_seq (the FIN is the last sequence number queued);
 * - the peer's FIN was received if SOCK_DONE is set (tcp_fin sets it, nothing else on TCP).
 * The SYNs are taken out by the baselines read when the socket became established.
 */
static __always_inline __u64 payload_acked(const struct sock *sk, int oldstate)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u64 acked = BPF_CORE_READ(tp, bytes_acked);
	if ((oldstate == TCP_FIN_WAIT1 || oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING ||
	     oldstate == TCP_LAST_ACK) &&
	    BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq) && acked > 0)
		acked -= 1;
	return acked;
}

static __always_inline __u64 payload_received(const struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	unsigned long flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
	if ((flags & (1UL << SOCK_DONE)) && received > 0)
		received -= 1;
	return received;
}

static __always_inline void emit(const struct conn *c, __u8 type, __u32 pid, const char *comm,
				 int oldstate, int newstate, const struct sock_info *info,
				 const struct sock *sk)
{
	struct tcptrace_event *e = bpf_ringbuf_reserve(&tcptrace_events, sizeof(*e), 0);
	if (!e) {
		count_lost(0);
		return;
	}
	__u64 now = bpf_ktime_get_boot_ns();
	e->time_ns = now;
	e->duration_ns = 0;
	e->tx_bytes = 0;
	e->rx_bytes = 0;
	if (type == EVENT_CLOSE && info) {
		/* open_ns is boot time too, so the difference is the socket's life */
		e->duration_ns = now - info->open_ns;
		e->tx_bytes = payload_acked(sk, oldstate) - info->acked_base;
		e->rx_bytes = payload_received(sk) - info->received_base;
	}
	if (c->family == 4) {
		__builtin_memset(e->saddr, 0, sizeof(e->saddr));
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		bpf_probe_read_kernel(e->saddr, 4, c->saddr);
		bpf_probe_read_kernel(e->daddr, 4, c->daddr);
	} else {
		bpf_probe_read_kernel(e->saddr, 16, c->saddr);
		bpf_probe_read_kernel(e->daddr, 16, c->daddr);
	}
	e->pid = pid;
	e->sport = c->sport;
	e->dport = c->dport;
	e->type = type;
	e->family = c->family;
	e->oldstate = oldstate;
	e->newstate = newstate;
	__builtin_memcpy(e->comm, comm, TASK_COMM_LEN);
	__u64 flags = 0;
	if (wakeup_bytes && bpf_ringbuf_query(&tcptrace_events, BPF_RB_AVAIL_DATA) < wakeup_bytes)
		flags = BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

SEC("tracepoint/sock/inet_sock_set_state")
int inet_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	struct conn c = {
		.family = ctx->family == AF_INET6 ? 6 : 4,
		.sport = ctx->sport,
		.dport = ctx->dport,
	};
	if (ctx->family == AF_INET6) {
		c.saddr = ctx->saddr_v6;
		c.daddr = ctx->daddr_v6;
	} else if (ctx->family == AF_INET) {
		c.saddr = ctx->saddr;
		c.daddr = ctx->daddr;
	} else {
		return 0;
	}
	if (filter_family && c.family != filter_family)
		return 0;
	/* The port filter judges emissions only: at CLOSE -> SYN_SENT the local port is still 0
	 * (connect() picks it afterwards), and the socket must be tracked from there. */
	bool port_ok = conn_allowed(&c);

	__u64 skaddr = (__u64)ctx->skaddr;
	const struct sock *sk = (const struct sock *)ctx->skaddr;
	int oldstate = ctx->oldstate;
	int newstate = ctx->newstate;
	struct sock_info *info = bpf_map_lookup_elem(&tcptrace_socks, &skaddr);

	if (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV) {
		struct sock_info fresh = { .open_ns = bpf_ktime_get_boot_ns() };
		if (newstate == TCP_SYN_SENT) {
			/* in connect(): current is the opener */
			fresh.pid = bpf_get_current_pid_tgid() >> 32;
			fresh.active = 1;
			process_comm(fresh.comm);
			if (!owner_allowed(fresh.pid, fresh.comm))
				return 0;
		}
		if (bpf_map_update_elem(&tcptrace_socks, &skaddr, &fresh, BPF_ANY) != 0)
			count_lost(1);
		info = bpf_map_lookup_elem(&tcptrace_socks, &skaddr);
	}

	__u32 pid;
	char comm[TASK_COMM_LEN] = {};
	if (info && info->pid) {
		pid = info->pid;
		__builtin_memcpy(comm, info->comm, TASK_COMM_LEN);
	} else {
		pid = bpf_get_current_pid_tgid() >> 32;
		process_comm(comm);
	}
	/* Passive sockets are judged by owner once accept() tells it; until then they pass. */
	bool owner_known = info ? info->pid != 0 : true;
	bool allowed = port_ok &&
		       (owner_known ? owner_allowed(pid, comm) : (filter_pid == 0 && filter_comm[0] == 0));

	/* the kernel re-enters FIN_WAIT1 on some paths: not a transition */
	if (emit_states && allowed && oldstate != newstate)
		emit(&c, EVENT_STATE, pid, comm, oldstate, newstate, 0, sk);

	if (!info)
		return 0;

	if (newstate == TCP_ESTABLISHED) {
		const struct tcp_sock *tp = (const struct tcp_sock *)sk;
		info->established = 1;
		info->acked_base = BPF_CORE_READ(tp, bytes_acked);
		info->received_base = BPF_CORE_READ(tp, bytes_received);
		if (oldstate == TCP_SYN_SENT && allowed)
			emit(&c, EVENT_CONNECT, pid, comm, oldstate, newstate, 0, sk);
	} else if (newstate == TCP_CLOSE) {
		/* An unaccepted passive socket closes with the listener: current is its closer. */
		if (info->established && port_ok && owner_allowed(pid, comm))
			emit(&c, EVENT_CLOSE, pid, comm, oldstate, newstate, info, sk);
		bpf_map_delete_elem(&tcptrace_socks, &skaddr);
	}
	return 0;
}

/* The socket accept() hands out: the accepter becomes its owner and `accept` is emitted. */
static __always_inline void on_accepted(const struct sock *sk)
{
	__u64 skaddr = (__u64)sk;
	struct sock_info *info = bpf_map_lookup_elem(&tcptrace_socks, &skaddr);
	if (!info || info->active || info->accepted)
		return;
	info->accepted = 1;
	info->pid = bpf_get_current_pid_tgid() >> 32;
	process_comm(info->comm);
	if (!owner_allowed(info->pid, info->comm))
		return;

	struct conn c = {};
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	/* the tracepoint's conventions: source = this socket's side, ports in host order */
	c.sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	c.dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET6) {
		c.family = 6;
		c.saddr = (const __u8 *)&sk->__sk_common.skc_v6_rcv_saddr;
		c.daddr = (const __u8 *)&sk->__sk_common.skc_v6_daddr;
	} else {
		c.family = 4;
		c.saddr = (const __u8 *)&sk->__sk_common.skc_rcv_saddr;
		c.daddr = (const __u8 *)&sk->__sk_common.skc_daddr;
	}
	if (!conn_allowed(&c))
		return;
	emit(&c, EVENT_ACCEPT, info->pid, info->comm, TCP_SYN_RECV, TCP_ESTABLISHED, 0, sk);
}

/* fentry flavour (off by default; userspace turns it on where fentry loads). */
SEC("?fexit/inet_csk_accept")
int BPF_PROG(inet_csk_accept_exit)
{
	__u64 ret = 0;
	bpf_get_func_ret(ctx, &ret);
	if (ret)
		on_accepted((const struct sock *)ret);
	return 0;
}

/* Fallback: the fd accept()/accept4() returned, resolved through current->files to its sock. */
static __always_inline void on_accept_syscall(long fd)
{
	if (fd < 0)
		return;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = 0;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	if (!file)
		return;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (sk)
		on_accepted(sk);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int sys_exit_accept4(struct syscall_exit_ctx *ctx)
{
	on_accept_syscall(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int sys_exit_accept(struct syscall_exit_ctx *ctx)
{
	on_accept_syscall(ctx->ret);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
