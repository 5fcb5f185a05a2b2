/**
 * The `defence` section of the proxy's configuration (zod) and its mapping to
 * {@linkcode DefenceSettings}.
 *
 * @module
 */
import { parseDuration } from "@triad/core";
import { z } from "zod";
import { Acl } from "../acl.ts";
import { nameLabels } from "./name_hash.ts";
import type { DefenceAction, DefenceMeasure, DefenceSettings } from "./rules.ts";

const duration = z.string().refine((text) => {
  try {
    parseDuration(text);
    return true;
  } catch {
    return false;
  }
}, { message: 'expected a duration such as "10s"' });

const action = z.enum(["drop", "truncate", "refused"]);

const prefix = z.string().refine((text) => {
  try {
    new Acl({ allow: [text] });
    return true;
  } catch {
    return false;
  }
}, { message: 'expected an IP prefix such as "192.0.2.0/24" or "2001:db8::/32"' });

const name = z.string().refine((text) => {
  try {
    nameLabels(text);
    return true;
  } catch {
    return false;
  }
}, { message: "expected a DNS name (labels of 1 to 63 bytes, 255 bytes in all)" });

/** The `defence` section's schema. */
export const defenceSchema = z.object({
  xdp: z.array(z.string()).default([]).describe(
    "Interfaces the kernel filter attaches to (native XDP, else generic XDP, else tc).",
  ),
  rules: z.array(z.object({
    name: z.string().regex(/^[a-zA-Z0-9_.-]+$/),
    measure: z.enum(["queries", "nxdomain", "servfail", "bytes"]),
    rate: z.number().positive(),
    window: duration.default("10s"),
    action: action.default("drop"),
    duration: duration.default("60s"),
  })).default([]).describe(
    "Dynamic block rules: a client over `rate` per second of `measure` over `window` is " +
      "blocked for `duration` with `action`.",
  ),
  block: z.object({
    clients: z.array(prefix).default([]).describe("Client prefixes always blocked."),
    names: z.array(name).default([]).describe("Names blocked with every name under them."),
    action: action.default("drop").describe("What the static lists do."),
  }).default({ clients: [], names: [], action: "drop" }),
}).default({ xdp: [], rules: [], block: { clients: [], names: [], action: "drop" } });

/** The validated `defence` section. */
export interface DefenceConfig {
  /** Interfaces for the kernel filter. */
  xdp: string[];
  /** Dynamic rules. */
  rules: {
    name: string;
    measure: DefenceMeasure;
    rate: number;
    window: string;
    action: DefenceAction;
    duration: string;
  }[];
  /** Static lists. */
  block: { clients: string[]; names: string[]; action: DefenceAction };
}

/**
 * Maps the configuration section to the proxy's settings.
 *
 * @param config The validated section.
 * @returns The settings.
 */
export function toDefenceSettings(config: DefenceConfig): DefenceSettings {
  return {
    rules: config.rules.map((rule) => ({
      name: rule.name,
      measure: rule.measure,
      rate: rule.rate,
      window: parseDuration(rule.window),
      action: rule.action,
      duration: parseDuration(rule.duration),
    })),
    clients: config.block.clients,
    names: config.block.names,
    staticAction: config.block.action,
  };
}
