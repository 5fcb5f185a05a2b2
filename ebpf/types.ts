/**
 * Program, map and attach types by name, as the kernel numbers them (`enum bpf_prog_type`,
 * `enum bpf_map_type`, `enum bpf_attach_type`).
 *
 * @module
 */

/** Program types, indexed by their kernel number. */
export const PROGRAM_TYPES = [
  "unspec",
  "socket_filter",
  "kprobe",
  "sched_cls",
  "sched_act",
  "tracepoint",
  "xdp",
  "perf_event",
  "cgroup_skb",
  "cgroup_sock",
  "lwt_in",
  "lwt_out",
  "lwt_xmit",
  "sock_ops",
  "sk_skb",
  "cgroup_device",
  "sk_msg",
  "raw_tracepoint",
  "cgroup_sock_addr",
  "lwt_seg6local",
  "lirc_mode2",
  "sk_reuseport",
  "flow_dissector",
  "cgroup_sysctl",
  "raw_tracepoint_writable",
  "cgroup_sockopt",
  "tracing",
  "struct_ops",
  "ext",
  "lsm",
  "sk_lookup",
  "syscall",
  "netfilter",
] as const;

/** A program type name, such as `tracepoint` or `xdp`. */
export type ProgramType = (typeof PROGRAM_TYPES)[number];

/** Map types, indexed by their kernel number. */
export const MAP_TYPES = [
  "unspec",
  "hash",
  "array",
  "prog_array",
  "perf_event_array",
  "percpu_hash",
  "percpu_array",
  "stack_trace",
  "cgroup_array",
  "lru_hash",
  "lru_percpu_hash",
  "lpm_trie",
  "array_of_maps",
  "hash_of_maps",
  "devmap",
  "sockmap",
  "cpumap",
  "xskmap",
  "sockhash",
  "cgroup_storage",
  "reuseport_sockarray",
  "percpu_cgroup_storage",
  "queue",
  "stack",
  "sk_storage",
  "devmap_hash",
  "struct_ops",
  "ringbuf",
  "inode_storage",
  "task_storage",
  "bloom_filter",
  "user_ringbuf",
  "cgrp_storage",
  "arena",
] as const;

/** A map type name, such as `hash` or `ringbuf`. */
export type MapType = (typeof MAP_TYPES)[number];

/** Attach types used by `@triad/ebpf`, by kernel number (`enum bpf_attach_type`). */
export const ATTACH_TYPES = {
  cgroup_inet_ingress: 0,
  cgroup_inet_egress: 1,
  cgroup_inet_sock_create: 2,
  cgroup_sock_ops: 3,
  sk_skb_stream_parser: 4,
  sk_skb_stream_verdict: 5,
  sk_msg_verdict: 7,
  cgroup_device: 6,
  cgroup_inet4_bind: 8,
  cgroup_inet6_bind: 9,
  cgroup_inet4_connect: 10,
  cgroup_inet6_connect: 11,
  cgroup_sysctl: 18,
  trace_raw_tp: 23,
  trace_fentry: 24,
  trace_fexit: 25,
  modify_return: 26,
  lsm_mac: 27,
  trace_iter: 28,
  sk_lookup: 36,
  xdp: 37,
  sk_skb_verdict: 38,
  trace_kprobe_multi: 42,
  netfilter: 45,
  tcx_ingress: 46,
  tcx_egress: 47,
  trace_uprobe_multi: 48,
  netkit_primary: 54,
  netkit_peer: 55,
} as const;

/** An attach type name. */
export type AttachType = keyof typeof ATTACH_TYPES;

/** Returns the name of a program type number (`prog_type_N` when unknown). */
export function programTypeName(type: number): ProgramType | `prog_type_${number}` {
  return PROGRAM_TYPES[type] ?? `prog_type_${type}`;
}

/** Returns the name of a map type number (`map_type_N` when unknown). */
export function mapTypeName(type: number): MapType | `map_type_${number}` {
  return MAP_TYPES[type] ?? `map_type_${type}`;
}

/** Returns whether a map type keeps one value per CPU. */
export function isPerCpu(type: string): boolean {
  return type === "percpu_hash" || type === "percpu_array" || type === "lru_percpu_hash" ||
    type === "percpu_cgroup_storage";
}
