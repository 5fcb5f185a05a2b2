/**
 * The kernel side of the proxy's defence: `dnsfilter.bpf.c` loaded through `@triad/ebpf` and
 * attached to interfaces (native XDP where the driver has it, generic XDP otherwise, tc ingress as
 * the fallback, chosen by trying them in that order), with the maps the proxy owns: blocked
 * client prefixes (IPv4 and IPv6 LPM tries), blocked names (suffix hashes), and drops per rule.
 *
 * @module
 */
import { ipToBytes, TriadError } from "@triad/core";
import type { Logger } from "@triad/core";
import type { Link } from "@triad/ebpf";
import { DnsfilterObject } from "../bpf/dnsfilter.gen.ts";
import type { DnsfilterBlock } from "../bpf/dnsfilter.gen.ts";
import { nameHash } from "./name_hash.ts";

/** How a program is attached to an interface. */
export type AttachMode = "native" | "generic" | "tc";

/** Options of {@linkcode KernelFilter.open}. */
export interface KernelFilterOptions {
  /** Interfaces to attach to (by name). */
  interfaces: readonly string[];
  /** The proxy's UDP port: only queries to it are looked at. */
  port: number;
  /** Where the attach decision is logged. */
  logger?: Logger;
  /** Insist on one mode instead of probing. */
  mode?: AttachMode;
}

/** Drops counted in the kernel for one rule (summed over CPUs). */
export interface KernelDrops {
  /** Packets dropped. */
  packets: bigint;
  /** Their bytes (from the Ethernet header). */
  bytes: bigint;
}

let clock: { clock_gettime: (id: number, ts: Uint8Array) => number } | undefined;

/**
 * `CLOCK_MONOTONIC` in ns: the clock block ends are given in. The filter compares them with
 * `bpf_ktime_get_coarse_ns` (the same clock as of the last timer tick), so a block may outlast
 * its end by up to one tick.
 */
export function ktimeNs(): bigint {
  if (clock === undefined) {
    clock = Deno.dlopen("libc.so.6", {
      clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
    }).symbols;
  }
  const ts = new Uint8Array(16);
  clock.clock_gettime(1, ts);
  const view = new DataView(ts.buffer);
  return view.getBigInt64(0, true) * 1_000_000_000n + view.getBigInt64(8, true);
}

function prefixKey(prefix: string): { v6: boolean; key: { prefixlen: number; addr: Uint8Array } } {
  const [address = "", bitsText] = prefix.trim().split("/");
  let bytes: Uint8Array;
  try {
    bytes = ipToBytes(address);
  } catch (cause) {
    throw new TriadError(`Blocked prefix "${prefix}": "${address}" is not an IP address`, {
      code: "bad_block",
      cause,
    });
  }
  const max = bytes.length * 8;
  const bits = bitsText === undefined ? max : Number(bitsText);
  if (!Number.isInteger(bits) || bits < 0 || bits > max || !/^\d*$/.test(bitsText ?? "")) {
    throw new TriadError(`Blocked prefix "${prefix}": the length must be 0 to ${max}`, {
      code: "bad_block",
    });
  }
  return { v6: bytes.length === 16, key: { prefixlen: bits, addr: bytes } };
}

/**
 * The loaded filter and its attachments. Blocks put here drop matching UDP queries to the
 * proxy's port before they reach a socket; `close()` detaches and unloads everything.
 *
 * @example
 * ```ts ignore
 * import { KernelFilter } from "./kernel_filter.ts";
 *
 * using filter = await KernelFilter.open({ interfaces: ["eth0"], port: 53 });
 * filter.blockPrefix("192.0.2.0/24", 1, 0n); // rule 1, no expiry
 * console.log(filter.drops().get(1));
 * ```
 */
export class KernelFilter implements Disposable {
  /** The interfaces and how the program is attached to each. */
  readonly attachments: { iface: string; mode: AttachMode }[] = [];
  readonly #object: DnsfilterObject;
  readonly #links: Link[] = [];
  readonly #names = new Set<bigint>();
  readonly #prefixes = new Set<string>();

  private constructor(object: DnsfilterObject) {
    this.#object = object;
  }

  /**
   * Loads the filter and attaches it to every interface, trying native XDP, then generic XDP,
   * then tc ingress (one log line per interface says which).
   *
   * @param options Interfaces, port, logger.
   * @returns The filter.
   * @throws {BpfError} When the program cannot load or attach anywhere (no privilege, no BPF).
   */
  static async open(options: KernelFilterOptions): Promise<KernelFilter> {
    const object = DnsfilterObject.open({ globals: { dns_port: options.port } });
    const filter = new KernelFilter(object);
    try {
      await object.load();
      for (const iface of options.interfaces) filter.#attach(iface, options);
    } catch (error) {
      filter.close();
      throw error;
    }
    return filter;
  }

  #attach(iface: string, options: KernelFilterOptions): void {
    const modes: AttachMode[] = options.mode ? [options.mode] : ["native", "generic", "tc"];
    const failures: string[] = [];
    for (const mode of modes) {
      try {
        const link = mode === "tc"
          ? this.#object.programs.dnsfilter_tc.attachTc(iface, { direction: "ingress" })
          : this.#object.programs.dnsfilter_xdp.attachXdp(iface, { mode });
        this.#links.push(link);
        this.attachments.push({ iface, mode });
        options.logger?.info("defence filter attached", {
          interface: iface,
          mode,
          ...(failures.length > 0 ? { tried: failures.join("; ") } : {}),
        });
        return;
      } catch (error) {
        failures.push(`${mode}: ${(error as Error).message}`);
      }
    }
    throw new TriadError(`Cannot attach the defence filter to ${iface}: ${failures.join("; ")}`, {
      code: "attach_failed",
    });
  }

  /** The kernel ids of the program(s), maps and links (for leak checks). */
  get ids(): { progs: number[]; maps: number[]; links: number[] } {
    return {
      progs: Object.values(this.#object.programs).map((p) => p.id),
      maps: Object.values(this.#object.maps).map((m) => m.id),
      links: this.#links.map((l) => l.id).filter((id) => id > 0),
    };
  }

  /**
   * Drops queries from a client prefix.
   *
   * @param prefix Such as `192.0.2.7`, `192.0.2.0/24` or `2001:db8::/32`.
   * @param rule The rule id (0 to 255) its drops are counted under.
   * @param expiresNs When the block ends ({@linkcode ktimeNs} clock), `0n` for never.
   */
  blockPrefix(prefix: string, rule: number, expiresNs: bigint): void {
    const { v6, key } = prefixKey(prefix);
    const value: DnsfilterBlock = { expires_ns: expiresNs, rule, action: 0 };
    const maps = this.#object.maps;
    if (key.prefixlen === key.addr.length * 8) {
      // A single address: the hash maps (one lookup, no trie walk).
      if (v6) maps.dnsfilter_hosts6.update({ addr: key.addr }, value);
      else maps.dnsfilter_hosts4.update(hostKey(key.addr), value);
      return;
    }
    if (v6) maps.dnsfilter_v6.update(key, value);
    else maps.dnsfilter_v4.update(key, value);
    this.#prefixes.add(`${v6}/${key.prefixlen}/${key.addr.join(".")}`);
    this.#object.object.writeGlobal("prefix_blocks", this.#prefixes.size);
  }

  /**
   * Removes a prefix block.
   *
   * @param prefix As given to {@linkcode KernelFilter.blockPrefix}.
   * @returns Whether it was there.
   */
  unblockPrefix(prefix: string): boolean {
    const { v6, key } = prefixKey(prefix);
    const maps = this.#object.maps;
    if (key.prefixlen === key.addr.length * 8) {
      return v6
        ? maps.dnsfilter_hosts6.delete({ addr: key.addr })
        : maps.dnsfilter_hosts4.delete(hostKey(key.addr));
    }
    const found = v6 ? maps.dnsfilter_v6.delete(key) : maps.dnsfilter_v4.delete(key);
    this.#prefixes.delete(`${v6}/${key.prefixlen}/${key.addr.join(".")}`);
    this.#object.object.writeGlobal("prefix_blocks", this.#prefixes.size);
    return found;
  }

  /**
   * Whether a prefix is in the filter's maps (expired or not).
   *
   * @param prefix As given to {@linkcode KernelFilter.blockPrefix}.
   * @returns Whether it is there.
   */
  hasPrefix(prefix: string): boolean {
    const { v6, key } = prefixKey(prefix);
    if (key.prefixlen === key.addr.length * 8) {
      return v6
        ? this.#object.maps.dnsfilter_hosts6.lookup({ addr: key.addr }) !== undefined
        : this.#object.maps.dnsfilter_hosts4.lookup(hostKey(key.addr)) !== undefined;
    }
    const map = v6 ? this.#object.maps.dnsfilter_v6 : this.#object.maps.dnsfilter_v4;
    // An LPM lookup finds the longest match: the entry is this prefix when the lengths agree.
    return map.lookup(key) !== undefined &&
      [...map.keys()].some((k) => k.prefixlen === key.prefixlen && equal(k.addr, key.addr));
  }

  /**
   * Drops queries for a name and every name under it.
   *
   * @param name Such as `example.com`.
   * @param rule The rule id its drops are counted under.
   * @param expiresNs When the block ends, `0n` for never.
   */
  blockName(name: string, rule: number, expiresNs: bigint): void {
    const hash = nameHash(name);
    this.#object.maps.dnsfilter_names.update(hash, { expires_ns: expiresNs, rule, action: 0 });
    this.#names.add(hash);
    this.#object.object.writeGlobal("name_blocks", this.#names.size);
  }

  /**
   * Removes a name block.
   *
   * @param name As given to {@linkcode KernelFilter.blockName}.
   * @returns Whether it was there.
   */
  unblockName(name: string): boolean {
    const hash = nameHash(name);
    const found = this.#object.maps.dnsfilter_names.delete(hash);
    this.#names.delete(hash);
    this.#object.object.writeGlobal("name_blocks", this.#names.size);
    return found;
  }

  /** Drops per rule id, summed over CPUs (rules without drops are left out). */
  drops(): Map<number, KernelDrops> {
    const out = new Map<number, KernelDrops>();
    for (const [rule, perCpu] of this.#object.maps.dnsfilter_drops.entriesBatch()) {
      let packets = 0n;
      let bytes = 0n;
      for (const counter of perCpu as unknown as { packets: bigint; bytes: bigint }[]) {
        packets += counter.packets;
        bytes += counter.bytes;
      }
      if (packets > 0n) out.set(rule as number, { packets, bytes });
    }
    return out;
  }

  /** Detaches from every interface and unloads the program and maps. */
  close(): void {
    for (const link of this.#links.splice(0)) link.close();
    this.#object.close();
  }

  /** Same as {@linkcode KernelFilter.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** The hash key of an IPv4 address: its network-order bytes read as a little-endian `__u32`. */
function hostKey(addr: Uint8Array): number {
  return new DataView(addr.buffer, addr.byteOffset, 4).getUint32(0, true);
}
