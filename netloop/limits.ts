/**
 * What stops a process from holding N connections: the descriptor limits, the accept backlog, the
 * local port range for outbound dials, and TCP's memory limit, each read from this machine with
 * the setting that lifts it.
 *
 * @module
 */
import { libc } from "./_ffi.ts";

/** One limit that can stop N connections. */
export interface LimitCheck {
  /** The limit, as its setting is named (`nofile (soft)`, `fs.file-max`, ...). */
  readonly name: string;
  /** Its value here (`unknown` when it could not be read: `/proc` needs `--allow-all` or FFI). */
  readonly value: string;
  /** What N connections need of it. */
  readonly needed: string;
  /** Whether it is enough (unknown values count as enough). */
  readonly ok: boolean;
  /** How to lift it, or what it means. */
  readonly fix: string;
}

/** What {@linkcode checkLimits} checks for. */
export interface LimitNeeds {
  /** Connections held at once (accepted and dialed). */
  connections: number;
  /** Of those, outbound connections dialed to one destination address and port. @default {0} */
  dials?: number;
  /** Event loops (each holds a few descriptors of its own and a reserve of 32). @default {1} */
  loops?: number;
}

/** Descriptors a process needs beyond its connections: the runtime's, and each loop's own. */
const BASE_DESCRIPTORS = 64;
const PER_LOOP_DESCRIPTORS = 40;
/** The accept backlog netloop asks for (capped by net.core.somaxconn). */
const LISTEN_BACKLOG = 4096;
/** Kernel socket memory a busy connection may hold (an idle one holds none), in bytes. */
const SOCKET_MEMORY = 4096;
/** CAP_SYS_RESOURCE: may raise a hard limit. */
const CAP_SYS_RESOURCE = 24;

/** The files the checks read, by what they hold (tests may point them elsewhere). */
export interface LimitSources {
  /** `/proc/self/limits`. */
  limits: string;
  /** `/proc/self/status` (capabilities). */
  status: string;
  /** `/proc/sys`. */
  sys: string;
}

const PROC: LimitSources = {
  limits: "/proc/self/limits",
  status: "/proc/self/status",
  sys: "/proc/sys",
};

const O_RDONLY_CLOEXEC = 0o2000000;

/**
 * Reads a small file; Deno lets only `--allow-all` read `/proc`, so with `--allow-ffi` it is read
 * through libc instead.
 */
function read(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) return undefined;
  }
  try {
    const lib = libc();
    const fd = lib.open(new TextEncoder().encode(path + "\0"), O_RDONLY_CLOEXEC);
    if (fd < 0) return undefined;
    const buffer = new Uint8Array(16384);
    let used = 0;
    for (let n = 1; n > 0 && used < buffer.length; used += Math.max(n, 0)) {
      n = lib.read(fd, buffer.subarray(used), buffer.length - used);
    }
    lib.close(fd);
    return new TextDecoder().decode(buffer.subarray(0, used)).trim();
  } catch {
    return undefined; // no --allow-ffi either
  }
}

function numbers(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const list = text.split(/\s+/).map((word) => word === "unlimited" ? Infinity : Number(word));
  return list.some((n) => Number.isNaN(n)) ? undefined : list;
}

function show(n: number | undefined): string {
  if (n === undefined) return "unknown";
  return n === Infinity ? "unlimited" : n.toLocaleString("en-US");
}

/**
 * Reads what will stop `connections` connections in this process and says, for each limit, the
 * setting that lifts it: soft and hard `RLIMIT_NOFILE` (and whether this process may raise them),
 * `fs.nr_open`, `fs.file-max`, `net.core.somaxconn`, `net.ipv4.tcp_max_syn_backlog`,
 * `net.ipv4.ip_local_port_range` (outbound dials to one address), and `net.ipv4.tcp_mem`.
 *
 * @param needs Connections, dials and loops.
 * @param sources Where to read (defaults: this process's `/proc`).
 * @returns One check per limit, in the order a user meets them.
 *
 * @example Checks for 1,000 connections
 * ```ts
 * import { checkLimits } from "@triad/netloop";
 * import assert from "node:assert/strict";
 *
 * const checks = checkLimits({ connections: 1000 });
 * assert.ok(checks.some((c) => c.name === "nofile (soft)"));
 * for (const c of checks) assert.equal(typeof c.fix, "string");
 * ```
 */
export function checkLimits(needs: LimitNeeds, sources: LimitSources = PROC): LimitCheck[] {
  const loops = needs.loops ?? 1;
  const fds = needs.connections + BASE_DESCRIPTORS + PER_LOOP_DESCRIPTORS * loops;
  const checks: LimitCheck[] = [];
  const limits = read(sources.limits);
  const nofile = limits === undefined ? undefined : /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  const soft = nofile ? numbers(nofile[1])?.[0] : undefined;
  const hard = nofile ? numbers(nofile[2])?.[0] : undefined;
  const capabilities = /^CapEff:\s+([0-9a-f]+)/m.exec(read(sources.status) ?? "");
  const mayRaiseHard = capabilities
    ? (BigInt(`0x${capabilities[1]}`) >> BigInt(CAP_SYS_RESOURCE) & 1n) === 1n
    : undefined;
  const nrOpen = numbers(read(`${sources.sys}/fs/nr_open`))?.[0];
  const raiseHard = mayRaiseHard
    ? "this process may raise it (CAP_SYS_RESOURCE)"
    : mayRaiseHard === false
    ? "this process may not raise it (no CAP_SYS_RESOURCE): start it with a higher limit"
    : "";
  checks.push({
    name: "nofile (soft)",
    value: show(soft),
    needed: show(fds),
    ok: soft === undefined || soft >= fds,
    fix: hard !== undefined && hard >= fds
      ? `ulimit -n ${fds} (up to the hard limit ${show(hard)}; any process may raise its ` +
        "soft limit, and Deno raises it to the hard one at start)"
      : `ulimit -n ${fds}, after the hard limit`,
  });
  checks.push({
    name: "nofile (hard)",
    value: show(hard),
    needed: show(fds),
    ok: hard === undefined || hard >= fds,
    fix: `ulimit -Hn ${fds}, LimitNOFILE=${fds} (systemd), nofile in ` +
      `/etc/security/limits.conf, or docker run --ulimit nofile=${fds}:${fds}` +
      (raiseHard ? `; ${raiseHard}` : ""),
  });
  checks.push({
    name: "fs.nr_open",
    value: show(nrOpen),
    needed: show(fds),
    ok: nrOpen === undefined || nrOpen >= fds,
    fix: `sysctl -w fs.nr_open=${Math.max(fds, 1048576)} (the highest hard nofile allowed)`,
  });
  const fileMax = numbers(read(`${sources.sys}/fs/file-max`))?.[0];
  const fileNr = numbers(read(`${sources.sys}/fs/file-nr`));
  const inUse = fileNr?.[0] ?? 0;
  checks.push({
    name: "fs.file-max",
    value: show(fileMax) + (fileNr ? ` (${show(inUse)} in use)` : ""),
    needed: show(fds + inUse),
    ok: fileMax === undefined || fileMax >= fds + inUse,
    fix: `sysctl -w fs.file-max=${Math.max(2 * (fds + inUse), 1048576)} (the whole system's)`,
  });
  const somaxconn = numbers(read(`${sources.sys}/net/core/somaxconn`))?.[0];
  const backlog = Math.min(LISTEN_BACKLOG, Math.max(128, needs.connections));
  checks.push({
    name: "net.core.somaxconn",
    value: show(somaxconn),
    needed: show(backlog),
    ok: somaxconn === undefined || somaxconn >= backlog,
    fix: `sysctl -w net.core.somaxconn=${LISTEN_BACKLOG} (caps each listener's accept ` +
      `backlog; netloop asks for ${LISTEN_BACKLOG}; a burst past it is dropped and retried)`,
  });
  const synBacklog = numbers(read(`${sources.sys}/net/ipv4/tcp_max_syn_backlog`))?.[0];
  checks.push({
    name: "net.ipv4.tcp_max_syn_backlog",
    value: show(synBacklog),
    needed: show(backlog),
    ok: synBacklog === undefined || synBacklog >= backlog,
    fix: `sysctl -w net.ipv4.tcp_max_syn_backlog=${LISTEN_BACKLOG} (half-open connections ` +
      `per listener; past it, SYN cookies)`,
  });
  const dials = needs.dials ?? 0;
  const range = numbers(read(`${sources.sys}/net/ipv4/ip_local_port_range`));
  const ports = range ? range[1]! - range[0]! + 1 : undefined;
  checks.push({
    name: "net.ipv4.ip_local_port_range",
    value: range ? `${range[0]}-${range[1]} (${show(ports)} ports)` : "unknown",
    needed: dials > 0 ? `${show(dials)} ports` : "none (no outbound dials)",
    ok: ports === undefined || ports >= dials,
    fix: `sysctl -w net.ipv4.ip_local_port_range="1024 65535" (each dial to one address and ` +
      `port takes a local port; past 64,511, dial from more source addresses or to more ` +
      `destinations)`,
  });
  const tcpMem = numbers(read(`${sources.sys}/net/ipv4/tcp_mem`));
  const pages = Math.ceil(needs.connections * SOCKET_MEMORY / 4096);
  checks.push({
    name: "net.ipv4.tcp_mem",
    value: tcpMem ? `${tcpMem.join(" ")} pages` : "unknown",
    needed: `${show(pages)} pages under pressure (${SOCKET_MEMORY} B for each busy connection)`,
    ok: tcpMem === undefined || tcpMem[1]! >= pages,
    fix: `sysctl -w net.ipv4.tcp_mem="${pages} ${pages * 2} ${pages * 3}" (pages of socket ` +
      `buffers for all TCP; past the second, buffers shrink; past the third, sends fail)`,
  });
  return checks;
}

/**
 * Formats checks one per line: `ok` or `LOW`, the limit, its value, what is needed, the fix.
 *
 * @param checks From {@linkcode checkLimits}.
 * @returns The text.
 *
 * @example
 * ```ts
 * import { checkLimits, formatLimits } from "@triad/netloop";
 * import assert from "node:assert/strict";
 *
 * assert.match(formatLimits(checkLimits({ connections: 10 })), /nofile \(soft\)/);
 * ```
 */
export function formatLimits(checks: readonly LimitCheck[]): string {
  return checks.map((c) =>
    `${c.ok ? "ok " : "LOW"} ${c.name}: ${c.value}; needed ${c.needed}` +
    (c.ok ? "" : `\n    lift it: ${c.fix}`)
  ).join("\n");
}
