/**
 * The proxy's defence in user space, like dnsdist's dynamic block groups: per-client rules (a
 * query rate, an NXDOMAIN or SERVFAIL rate, a response-bytes rate, each over a window) that block
 * a client for a duration with an action — `drop` (in the kernel filter when it runs, silently
 * here otherwise), `truncate` (an empty answer with TC over UDP, so real clients retry over TCP)
 * or `refused` — and static lists of client prefixes and names from the configuration.
 *
 * The proxy makes one call per query, {@linkcode DefenceRules.answer}, which wraps its own.
 *
 * @module
 */
import type { Labels, Logger, Metrics } from "@triad/core";
import { Acl } from "../acl.ts";
import { buildErrorResponse } from "../wire/builders.ts";
import { parseMessage } from "../wire/message.ts";
import type { MessageInfo } from "../wire/message.ts";
import { nameLabels } from "./name_hash.ts";

/** What a block does to a client's queries. */
export type DefenceAction = "drop" | "truncate" | "refused";

/** What a dynamic rule counts per client. */
export type DefenceMeasure = "queries" | "nxdomain" | "servfail" | "bytes";

/** A dynamic rule: over `rate` per second for `window` ms, the client is blocked. */
export interface DefenceRule {
  /** The rule's name (metrics label, log field). */
  name: string;
  /** What is counted: queries, NXDOMAIN or SERVFAIL answers, or response bytes. */
  measure: DefenceMeasure;
  /** Per second, averaged over the window. */
  rate: number;
  /** The window in ms. */
  window: number;
  /** What the block does. */
  action: DefenceAction;
  /** How long the block lasts, in ms. */
  duration: number;
}

/** The defence settings (plain data: they travel to every loop). */
export interface DefenceSettings {
  /** Dynamic rules. */
  rules: readonly DefenceRule[];
  /** Client prefixes always blocked (such as `192.0.2.0/24`). */
  clients: readonly string[];
  /** Names blocked with every name under them. */
  names: readonly string[];
  /** What the static lists do. */
  staticAction: DefenceAction;
}

/** A block starting or ending, for the kernel filter (the proxy's owner installs it). */
export interface DefenceEvent {
  /** `start` or `end`. */
  type: "start" | "end";
  /** The client address. */
  client: string;
  /** The rule's name. */
  rule: string;
  /** The rule's id in the kernel's counters. */
  ruleId: number;
  /** The action. */
  action: DefenceAction;
  /** How long the block lasts from now, in ms (for `start`). */
  durationMs: number;
}

/** Rule ids of the kernel's counters: static lists first, then dynamic rules in order. */
export const STATIC_CLIENTS_RULE = 1;
/** The kernel counter id of the static name list. */
export const STATIC_NAMES_RULE = 2;
/** The id of the first dynamic rule. */
const FIRST_DYNAMIC_RULE = 16;

/** Names of the kernel counter ids, for metrics. */
export function ruleNames(settings: DefenceSettings): Map<number, string> {
  const names = new Map<number, string>([
    [STATIC_CLIENTS_RULE, "static_clients"],
    [STATIC_NAMES_RULE, "static_names"],
  ]);
  settings.rules.forEach((rule, i) => names.set(FIRST_DYNAMIC_RULE + i, rule.name));
  return names;
}

interface Window {
  start: number;
  count: number;
}

/** A block in force. */
export interface DefenceBlock {
  /** The rule's name. */
  rule: string;
  /** The rule's kernel counter id. */
  ruleId: number;
  /** The action. */
  action: DefenceAction;
  /** When it ends (the rules' clock, ms). */
  until: number;
}

/** Options of {@linkcode DefenceRules}. */
export interface DefenceRulesOptions {
  /** Where blocks starting and ending are logged. */
  logger?: Logger;
  /** The registry the defence metrics are added to. */
  metrics?: Metrics;
  /** Receives blocks that start and end (the kernel filter's feed). */
  onEvent?: (event: DefenceEvent) => void;
  /** Milliseconds clock, for tests. @default {performance.now} */
  now?: () => number;
  /** Most clients tracked per rule. @default {100000} */
  maxClients?: number;
}

/** Who asked, and how (the proxy's `ClientInfo` or more). */
export interface DefenceClient {
  /** The client's address. */
  readonly address: string;
  /** The transport: UDP, or a stream one (TCP, DoT, DoH, DoQ). */
  readonly transport: "udp" | "tcp" | "tls" | "https" | "quic";
}

/** The proxy's own answer path, which the rules wrap. */
export type DefenceNext<C, K extends DefenceClient> = (
  packet: Uint8Array,
  client: K,
  respond: (answer: Uint8Array | null, context: C) => void,
  context: C,
) => Uint8Array | null | undefined;

/**
 * The rules of one proxy.
 *
 * @example A client over 2 queries/s for 1 s gets REFUSED for 10 s
 * ```ts
 * import { DefenceRules } from "./rules.ts";
 * import assert from "node:assert/strict";
 *
 * let clock = 0;
 * const rules = new DefenceRules({
 *   rules: [{ name: "qps", measure: "queries", rate: 2, window: 1000, action: "refused", duration: 10_000 }],
 *   clients: [], names: [], staticAction: "drop",
 * }, { now: () => clock });
 * const query = new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 120, 0, 0, 1, 0, 1]);
 * const client = { address: "192.0.2.1", transport: "udp" as const };
 * const upstream = () => new Uint8Array([0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
 * for (let i = 0; i < 3; i++) rules.answer(query, client, () => {}, null, upstream);
 * const refused = rules.answer(query, client, () => {}, null, upstream)!;
 * assert.equal(refused[3]! & 0xf, 5);
 * clock = 10_001;
 * assert.equal(rules.answer(query, client, () => {}, null, upstream)![3]! & 0xf, 0);
 * ```
 */
export class DefenceRules {
  #settings: DefenceSettings;
  #staticClients: Acl | undefined;
  #staticNames: Set<string>;
  #windows: Map<string, Window>[];
  readonly #blocks = new Map<string, DefenceBlock>();
  readonly #logger: Logger | undefined;
  readonly #onEvent: ((event: DefenceEvent) => void) | undefined;
  readonly #now: () => number;
  readonly #maxClients: number;
  readonly #started: ((labels: Labels) => void) | undefined;
  readonly #handled: ((labels: Labels) => void) | undefined;
  #nextSweep = 0;

  /**
   * Creates the rules.
   *
   * @param settings Rules and static lists.
   * @param options Logger, metrics, event sink, clock.
   * @throws {TriadError} Naming a bad static prefix; {RangeError} naming a bad name.
   */
  constructor(settings: DefenceSettings, options: DefenceRulesOptions = {}) {
    this.#settings = settings;
    [this.#staticClients, this.#staticNames] = staticLists(settings);
    this.#windows = settings.rules.map(() => new Map());
    this.#logger = options.logger;
    this.#onEvent = options.onEvent;
    this.#now = options.now ?? (() => performance.now());
    this.#maxClients = options.maxClients ?? 100_000;
    const metrics = options.metrics;
    if (metrics !== undefined) {
      const started = metrics.counter({
        name: "dns_defence_blocks_total",
        help: "Blocks started, per rule and action.",
        labels: ["rule", "action"],
      });
      const handled = metrics.counter({
        name: "dns_defence_blocked_queries_total",
        help: "Queries of blocked clients or names seen in user space, per rule and action.",
        labels: ["rule", "action"],
      });
      const active = metrics.gauge({
        name: "dns_defence_active_blocks",
        help: "Blocks in force, per rule and action.",
        labels: ["rule", "action"],
      });
      this.#started = (labels) => started.inc(labels);
      this.#handled = (labels) => handled.inc(labels);
      metrics.onCollect(() => {
        this.#sweep(this.#now());
        const counts = new Map<string, number>();
        for (const rule of this.#settings.rules) counts.set(`${rule.name}\0${rule.action}`, 0);
        for (const block of this.#blocks.values()) {
          const key = `${block.rule}\0${block.action}`;
          counts.set(key, (counts.get(key) ?? 0) + 1);
        }
        for (const [key, count] of counts) {
          const [rule = "", action = ""] = key.split("\0");
          active.set(count, { rule, action });
        }
      });
    }
  }

  /**
   * Applies new settings: static lists are replaced, rule windows kept where the rule is the
   * same, blocks in force stay until they end.
   *
   * @param settings The new settings.
   */
  reconfigure(settings: DefenceSettings): void {
    const [staticClients, staticNames] = staticLists(settings);
    const windows = settings.rules.map((rule) => {
      const i = this.#settings.rules.findIndex((old) =>
        JSON.stringify(old) === JSON.stringify(rule)
      );
      return i === -1 ? new Map<string, Window>() : this.#windows[i]!;
    });
    this.#settings = settings;
    this.#staticClients = staticClients;
    this.#staticNames = staticNames;
    this.#windows = windows;
  }

  /** The clients blocked now, with their rule and action. */
  get blocks(): ReadonlyMap<string, Readonly<DefenceBlock>> {
    this.#sweep(this.#now());
    return this.#blocks;
  }

  /**
   * Answers one query through the rules: a blocked client or name gets its action, others are
   * answered by `next` (the proxy) and counted towards the rules.
   *
   * @param packet The query.
   * @param client Who asked, and how.
   * @param respond The proxy's later-answer callback.
   * @param context Its context.
   * @param next The proxy's own answer path.
   * @returns As the proxy's `answer`.
   */
  answer<C, K extends DefenceClient>(
    packet: Uint8Array,
    client: K,
    respond: (answer: Uint8Array | null, context: C) => void,
    context: C,
    next: DefenceNext<C, K>,
  ): Uint8Array | null | undefined {
    const now = this.#now();
    if (now >= this.#nextSweep) this.#sweep(now);
    const block = this.#blocks.get(client.address);
    if (block !== undefined && block.until > now) {
      return this.#enforce(block.rule, block.action, packet, client, respond, context, next);
    }
    if (this.#staticClients?.allows(client.address)) {
      return this.#enforce(
        "static_clients",
        this.#settings.staticAction,
        packet,
        client,
        respond,
        context,
        next,
      );
    }
    if (this.#staticNames.size > 0 && this.#nameBlocked(packet)) {
      return this.#enforce(
        "static_names",
        this.#settings.staticAction,
        packet,
        client,
        respond,
        context,
        next,
      );
    }
    const rules = this.#settings.rules;
    if (rules.length === 0) return next(packet, client, respond, context);
    this.#count(client.address, "queries", 1, now);
    const answer = next(packet, client, (later, ctx) => {
      if (later !== null) this.#observe(client.address, later, this.#now());
      respond(later, ctx);
    }, context);
    if (answer) this.#observe(client.address, answer, now);
    return answer;
  }

  #observe(address: string, answer: Uint8Array, now: number): void {
    if (answer.length < 4) return;
    const rcode = answer[3]! & 0xf;
    if (rcode === 3) this.#count(address, "nxdomain", 1, now);
    else if (rcode === 2) this.#count(address, "servfail", 1, now);
    this.#count(address, "bytes", answer.length, now);
  }

  #count(address: string, measure: DefenceMeasure, amount: number, now: number): void {
    const rules = this.#settings.rules;
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!;
      if (rule.measure !== measure) continue;
      const windows = this.#windows[i]!;
      let window = windows.get(address);
      if (window === undefined || now - window.start >= rule.window) {
        if (window === undefined && windows.size >= this.#maxClients) {
          const oldest = windows.keys().next().value;
          if (oldest !== undefined) windows.delete(oldest);
        }
        window = { start: now, count: 0 };
        windows.delete(address);
        windows.set(address, window);
      }
      window.count += amount;
      if (window.count > rule.rate * rule.window / 1000 && !this.#blocks.has(address)) {
        this.#start(address, rule, FIRST_DYNAMIC_RULE + i, now);
        window.count = 0;
      }
    }
  }

  #start(address: string, rule: DefenceRule, ruleId: number, now: number): void {
    this.#blocks.set(address, {
      rule: rule.name,
      ruleId,
      action: rule.action,
      until: now + rule.duration,
    });
    this.#started?.({ rule: rule.name, action: rule.action });
    // With an event sink (the proxy program's), the sink logs: loops may log elsewhere.
    if (this.#onEvent === undefined) {
      this.#logger?.warn("block started", {
        client: address,
        rule: rule.name,
        action: rule.action,
        duration: `${rule.duration}ms`,
      });
    }
    this.#onEvent?.({
      type: "start",
      client: address,
      rule: rule.name,
      ruleId,
      action: rule.action,
      durationMs: rule.duration,
    });
    this.#nextSweep = Math.min(this.#nextSweep, now + rule.duration);
  }

  #sweep(now: number): void {
    let next = now + 1000;
    for (const [address, block] of this.#blocks) {
      if (block.until > now) {
        next = Math.min(next, block.until);
        continue;
      }
      this.#blocks.delete(address);
      if (this.#onEvent === undefined) {
        this.#logger?.info("block ended", {
          client: address,
          rule: block.rule,
          action: block.action,
        });
      }
      this.#onEvent?.({
        type: "end",
        client: address,
        rule: block.rule,
        ruleId: block.ruleId,
        action: block.action,
        durationMs: 0,
      });
    }
    this.#nextSweep = next;
  }

  #enforce<C, K extends DefenceClient>(
    rule: string,
    action: DefenceAction,
    packet: Uint8Array,
    client: K,
    respond: (answer: Uint8Array | null, context: C) => void,
    context: C,
    next: DefenceNext<C, K>,
  ): Uint8Array | null | undefined {
    this.#handled?.({ rule, action });
    // Over TCP (or DoT, DoH, DoQ) the client did what truncation asks: answer it.
    if (action === "truncate" && client.transport !== "udp") {
      return next(packet, client, respond, context);
    }
    if (action === "drop" && client.transport === "udp") return null;
    if (packet.length < 12 || (packet[2]! & 0x80) !== 0) return null;
    let info: MessageInfo | undefined;
    try {
      info = parseMessage(packet); // to echo the question (and the OPT's DO bit)
    } catch {
      // The header alone, then.
    }
    const truncate = action === "truncate";
    const out = buildErrorResponse(info ? packet : packet.subarray(0, 12), truncate ? 0 : 5, info);
    if (truncate) out[2] = out[2]! | 0x02; // TC: retry over TCP
    return out;
  }

  /** Whether the question's name is a blocked name or under one. */
  #nameBlocked(packet: Uint8Array): boolean {
    const labels: string[] = [];
    let pos = 12;
    for (let n = 0; n < 128 && pos < packet.length; n++) {
      const length = packet[pos]!;
      if (length === 0) break;
      if (length > 63 || pos + 1 + length > packet.length) return false;
      let label = "";
      for (let i = pos + 1; i <= pos + length; i++) {
        const c = packet[i]!;
        label += String.fromCharCode(c >= 0x41 && c <= 0x5a ? c + 32 : c);
      }
      labels.push(label);
      pos += 1 + length;
    }
    for (let i = 0; i < labels.length; i++) {
      if (this.#staticNames.has(labels.slice(i).join("."))) return true;
    }
    return false;
  }
}

/** The static lists in matching form (a prefix list; names lower-cased, no final dot). */
function staticLists(settings: DefenceSettings): [Acl | undefined, Set<string>] {
  return [
    settings.clients.length > 0 ? new Acl({ allow: settings.clients }) : undefined,
    new Set(settings.names.map((name) => nameLabels(name).join("."))),
  ];
}
