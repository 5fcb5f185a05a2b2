/**
 * The proxy program's side of the kernel filter: opens it on the configured interfaces (or says
 * in one log line why it runs without), installs the blocks the proxies start with action `drop`
 * and removes them when they end, keeps the static lists in the maps through reloads, and
 * exposes the kernel's drop counters as metrics.
 *
 * @module
 */
import type { Logger } from "@triad/core";
import { KernelFilter, ktimeNs } from "./kernel_filter.ts";
import type { AttachMode } from "./kernel_filter.ts";
import { ruleNames, STATIC_CLIENTS_RULE, STATIC_NAMES_RULE } from "./rules.ts";
import type { DefenceEvent, DefenceSettings } from "./rules.ts";

/** Options of {@linkcode startDefence}. */
export interface DefenceOptions {
  /** Interfaces for the kernel filter; none: user space only. */
  interfaces: readonly string[];
  /** The proxy's UDP port. */
  port: number;
  /** The defence settings (static lists, rule names). */
  settings: DefenceSettings;
  /** Where the attach decision (or why there is none) is logged. */
  logger?: Logger;
  /** Insist on one attach mode (tests). */
  mode?: AttachMode;
}

/** The running defence of a proxy program. */
export interface Defence extends Disposable {
  /** The kernel filter, when it runs. */
  readonly filter: KernelFilter | undefined;
  /** Why the kernel filter does not run (`""` when it does or was not asked for). */
  readonly reason: string;
  /** Applies a block starting or ending in a proxy. */
  onEvent(event: DefenceEvent): void;
  /** Applies new settings (static lists). */
  reconfigure(settings: DefenceSettings): void;
  /** Prometheus text of the kernel counters (at 0 for each rule without the kernel filter). */
  metrics(): string;
  /** Unloads the filter. */
  close(): void;
}

/**
 * Starts the defence: the kernel filter on the interfaces when it can load.
 *
 * @param options Interfaces, port, settings, logger.
 * @returns The defence; without privilege or kernel support it runs in user space only.
 */
export async function startDefence(options: DefenceOptions): Promise<Defence> {
  let filter: KernelFilter | undefined;
  let reason = "";
  if (options.interfaces.length > 0) {
    try {
      filter = await KernelFilter.open({
        interfaces: options.interfaces,
        port: options.port,
        ...(options.logger === undefined ? {} : { logger: options.logger }),
        ...(options.mode === undefined ? {} : { mode: options.mode }),
      });
    } catch (error) {
      reason = (error as Error).message.split("\n")[0]!;
      options.logger?.warn("kernel filter not loaded: blocks are enforced in user space", {
        interfaces: options.interfaces.join(","),
        reason,
      });
    }
  }
  let settings = options.settings;
  const staticPrefixes = new Set<string>();
  const staticNames = new Set<string>();
  const dynamic = new Map<string, number>(); // client → blocks in force (one per loop)
  const sync = () => {
    if (filter === undefined) return;
    const drop = settings.staticAction === "drop";
    const prefixes = new Set(drop ? settings.clients : []);
    const names = new Set(drop ? settings.names : []);
    for (const prefix of staticPrefixes) {
      if (!prefixes.has(prefix)) filter.unblockPrefix(prefix);
    }
    for (const name of staticNames) if (!names.has(name)) filter.unblockName(name);
    for (const prefix of prefixes) filter.blockPrefix(prefix, STATIC_CLIENTS_RULE, 0n);
    for (const name of names) filter.blockName(name, STATIC_NAMES_RULE, 0n);
    staticPrefixes.clear();
    staticNames.clear();
    for (const prefix of prefixes) staticPrefixes.add(prefix);
    for (const name of names) staticNames.add(name);
  };
  sync();
  const close = () => {
    filter?.close();
    filter = undefined;
  };
  return {
    get filter() {
      return filter;
    },
    reason,
    onEvent(event) {
      if (event.type === "start") {
        options.logger?.warn("block started", {
          client: event.client,
          rule: event.rule,
          action: event.action,
          duration: `${event.durationMs}ms`,
          kernel: filter !== undefined && event.action === "drop",
        });
      } else {
        options.logger?.info("block ended", {
          client: event.client,
          rule: event.rule,
          action: event.action,
        });
      }
      if (filter === undefined || event.action !== "drop") return;
      // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; the filter sees IPv4.
      event = { ...event, client: event.client.replace(/^::ffff:(?=\d+\.)/i, "") };
      const count = dynamic.get(event.client) ?? 0;
      if (event.type === "start") {
        dynamic.set(event.client, count + 1);
        filter.blockPrefix(
          event.client,
          event.ruleId,
          ktimeNs() + BigInt(Math.round(event.durationMs)) * 1_000_000n,
        );
      } else if (count <= 1) {
        dynamic.delete(event.client);
        if (!staticPrefixes.has(event.client)) filter.unblockPrefix(event.client);
      } else {
        dynamic.set(event.client, count - 1);
      }
    },
    reconfigure(next) {
      settings = next;
      sync();
    },
    metrics() {
      // Every rule's counters are exported, at 0 until the kernel drops for it (and always
      // without the kernel filter), so dashboards and alerts have series from the start;
      // `dns_defence_kernel_attached` has none without the filter.
      const names = ruleNames(settings);
      const drops = new Map([...names.keys()].map((id) => [id, { packets: 0n, bytes: 0n }]));
      for (const [id, count] of filter?.drops() ?? []) drops.set(id, count);
      const lines = [
        "# HELP dns_defence_kernel_dropped_packets_total Queries dropped by the kernel filter.",
        "# TYPE dns_defence_kernel_dropped_packets_total counter",
      ];
      const bytes = [
        "# HELP dns_defence_kernel_dropped_bytes_total Bytes dropped by the kernel filter.",
        "# TYPE dns_defence_kernel_dropped_bytes_total counter",
      ];
      for (const [id, count] of drops) {
        const rule = names.get(id) ?? `rule_${id}`;
        lines.push(
          `dns_defence_kernel_dropped_packets_total{rule="${rule}",action="drop"} ${count.packets}`,
        );
        bytes.push(
          `dns_defence_kernel_dropped_bytes_total{rule="${rule}",action="drop"} ${count.bytes}`,
        );
      }
      const attached = [
        "# HELP dns_defence_kernel_attached The kernel filter's attachments.",
        "# TYPE dns_defence_kernel_attached gauge",
        ...(filter?.attachments ?? []).map((a) =>
          `dns_defence_kernel_attached{interface="${a.iface}",mode="${a.mode}"} 1`
        ),
      ];
      return [...lines, ...bytes, ...attached].join("\n") + "\n";
    },
    close,
    [Symbol.dispose]: close,
  };
}
