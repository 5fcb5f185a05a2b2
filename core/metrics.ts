/**
 * Counters, gauges and histograms with Prometheus text exposition (format 0.0.4). A registry can
 * be snapshotted into plain data, so registries living in several Workers can be merged into one
 * exposition by the main thread.
 *
 * @module
 */
import { TriadError } from "./error.ts";

/** Label values by label name. */
export type Labels = Readonly<Record<string, string>>;

/** The kinds of metric. */
export type MetricKind = "counter" | "gauge" | "histogram";

/** Describes a metric when it is registered. */
export interface MetricOptions {
  /** The metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`; counters conventionally end in `_total`. */
  name: string;
  /** One line of help text. */
  help: string;
  /** Label names, in the order they are exposed. @default {[]} */
  labels?: readonly string[];
}

/** Describes a histogram when it is registered. */
export interface HistogramOptions extends MetricOptions {
  /** Upper bounds of the buckets, ascending; `+Inf` is implied. @default {DEFAULT_BUCKETS} */
  buckets?: readonly number[];
}

/** Prometheus' default buckets, in seconds. */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/** One labelled series of a metric, as plain data. */
export interface SeriesSnapshot {
  /** Label values in the order of the metric's label names. */
  values: string[];
  /** Counter or gauge value; for histograms, the sum of observations. */
  value: number;
  /** Histogram only: cumulative counts per bucket, the last one being `+Inf` (the total count). */
  counts?: number[];
}

/** A metric as plain data, safe to `postMessage` between Workers. */
export interface MetricSnapshot {
  /** The kind. */
  kind: MetricKind;
  /** The name. */
  name: string;
  /** The help text. */
  help: string;
  /** The label names. */
  labels: string[];
  /** Histogram only: the bucket upper bounds, without `+Inf`. */
  buckets?: number[];
  /** Every series seen. */
  series: SeriesSnapshot[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

interface Series {
  values: string[];
  value: number;
  counts?: Float64Array;
}

/** What every metric has: a kind, a name, help text, label names and its series. */
export abstract class Metric {
  readonly #series = new Map<string, Series>();
  readonly #slots: number;
  /** The kind. */
  readonly kind: MetricKind;
  /** The name. */
  readonly name: string;
  /** The help text. */
  readonly help: string;
  /** The label names. */
  readonly labels: readonly string[];

  /**
   * Creates a metric; use {@linkcode Metrics} to register one.
   *
   * @param kind The kind.
   * @param name The name.
   * @param help The help text.
   * @param labels The label names.
   * @param slots Bucket counters per series (histograms only).
   */
  constructor(kind: MetricKind, name: string, help: string, labels: readonly string[], slots = 0) {
    this.kind = kind;
    this.name = name;
    this.help = help;
    this.labels = labels;
    this.#slots = slots;
  }

  /** @internal */
  protected series(labels: Labels | undefined): Series {
    if (this.labels.length === 0) {
      if (labels !== undefined && Object.keys(labels).length > 0) {
        throw new TriadError(`Metric ${this.name} has no labels, got ${JSON.stringify(labels)}`, {
          code: "bad_metric",
        });
      }
      return this.#get("", []);
    }
    if (labels === undefined) {
      throw new TriadError(`Metric ${this.name} needs labels ${this.labels.join(", ")}`, {
        code: "bad_metric",
      });
    }
    const values = this.labels.map((label) => {
      const value = labels[label];
      if (value === undefined) {
        throw new TriadError(`Metric ${this.name} is missing label "${label}"`, {
          code: "bad_metric",
        });
      }
      return value;
    });
    return this.#get(values.join("\u0000"), values);
  }

  /**
   * Drops one labelled series, so that it is no longer exposed (a label value that stopped
   * existing, such as an upstream removed by a reload).
   *
   * @param labels The series' labels.
   * @returns Whether the series existed.
   */
  remove(labels: Labels): boolean {
    return this.#series.delete(this.labels.map((label) => labels[label] ?? "").join("\u0000"));
  }

  #get(key: string, values: string[]): Series {
    let series = this.#series.get(key);
    if (series === undefined) {
      series = { values, value: 0 };
      if (this.#slots > 0) series.counts = new Float64Array(this.#slots);
      this.#series.set(key, series);
    }
    return series;
  }

  /** @internal */
  snapshot(): MetricSnapshot {
    const snapshot: MetricSnapshot = {
      kind: this.kind,
      name: this.name,
      help: this.help,
      labels: [...this.labels],
      series: [...this.#series.values()].map((s) => {
        const out: SeriesSnapshot = { values: [...s.values], value: s.value };
        if (s.counts !== undefined) out.counts = Array.from(s.counts);
        return out;
      }),
    };
    return snapshot;
  }
}

/** A value that only goes up. */
export class Counter extends Metric {
  /**
   * Adds to the counter.
   *
   * @param labels Label values, when the counter has labels.
   * @param amount How much to add; not negative. @default {1}
   */
  inc(labels?: Labels, amount = 1): void {
    if (!(amount >= 0)) {
      throw new TriadError(`Counter ${this.name} cannot go down by ${amount}`, {
        code: "bad_metric",
      });
    }
    this.series(labels).value += amount;
  }

  /**
   * Returns a handle bound to one set of label values, for hot paths.
   *
   * @param labels Label values.
   * @returns A function that adds `amount` (default 1).
   */
  bind(labels?: Labels): (amount?: number) => void {
    const series = this.series(labels);
    return (amount = 1) => {
      series.value += amount;
    };
  }

  /** Returns the current value for a set of labels. */
  get(labels?: Labels): number {
    return this.series(labels).value;
  }
}

/** A value that goes up and down. */
export class Gauge extends Metric {
  /** Sets the gauge. */
  set(value: number, labels?: Labels): void {
    this.series(labels).value = value;
  }
  /** Adds to the gauge (negative to subtract). */
  add(amount: number, labels?: Labels): void {
    this.series(labels).value += amount;
  }
  /** Returns the current value for a set of labels. */
  get(labels?: Labels): number {
    return this.series(labels).value;
  }
}

/** Counts observations into buckets and keeps their sum. */
export class Histogram extends Metric {
  /** The bucket upper bounds, without `+Inf`. */
  readonly buckets: readonly number[];

  /**
   * Creates a histogram; use {@linkcode Metrics.histogram} to register one.
   *
   * @param name The name.
   * @param help The help text.
   * @param labels The label names.
   * @param buckets Bucket upper bounds, strictly ascending.
   */
  constructor(name: string, help: string, labels: readonly string[], buckets: readonly number[]) {
    const bounds = buckets.filter((b) => b !== Infinity);
    super("histogram", name, help, labels, bounds.length + 1);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]! > buckets[i - 1]!)) {
        throw new TriadError(`Histogram ${name} buckets must be strictly ascending`, {
          code: "bad_metric",
        });
      }
    }
    this.buckets = bounds;
  }

  /** @internal */
  override snapshot(): MetricSnapshot {
    return { ...super.snapshot(), buckets: [...this.buckets] };
  }

  /**
   * Records one observation.
   *
   * @param value The observed value (seconds, by Prometheus convention).
   * @param labels Label values, when the histogram has labels.
   */
  observe(value: number, labels?: Labels): void {
    this.#record(this.series(labels), value);
  }

  /**
   * Returns a handle bound to one set of label values, for hot paths (no label lookup per call).
   *
   * @param labels Label values.
   * @returns A function that records one observation.
   */
  bind(labels?: Labels): (value: number) => void {
    const series = this.series(labels);
    return (value) => this.#record(series, value);
  }

  #record(series: Series, value: number): void {
    series.value += value;
    const counts = series.counts!;
    for (let i = 0; i < this.buckets.length; i++) {
      if (value <= this.buckets[i]!) counts[i]!++;
    }
    counts[this.buckets.length]!++;
  }
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function escapeHelp(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatNumber(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  if (Number.isNaN(value)) return "NaN";
  return String(value);
}

function labelText(names: readonly string[], values: readonly string[], extra?: string): string {
  const parts = names.map((name, i) => `${name}="${escapeLabel(values[i]!)}"`);
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/**
 * Formats metric snapshots as Prometheus text. Snapshots with the same name (say, one per Worker)
 * are merged: series with the same labels are summed.
 *
 * @param snapshots Snapshots from one or more registries.
 * @returns The exposition text, ending in a newline.
 *
 * @example Merge two Workers' counters
 * ```ts
 * import { formatPrometheus, Metrics } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * const a = new Metrics();
 * const b = new Metrics();
 * for (const m of [a, b]) m.counter({ name: "hits_total", help: "Cache hits." }).inc();
 * assert.equal(
 *   formatPrometheus([...a.snapshot(), ...b.snapshot()]),
 *   "# HELP hits_total Cache hits.\n# TYPE hits_total counter\nhits_total 2\n",
 * );
 * ```
 */
export function formatPrometheus(snapshots: readonly MetricSnapshot[]): string {
  const merged = new Map<string, MetricSnapshot>();
  for (const snapshot of snapshots) {
    const seen = merged.get(snapshot.name);
    if (seen === undefined) {
      merged.set(snapshot.name, structuredClone(snapshot));
      continue;
    }
    for (const series of snapshot.series) {
      const key = series.values.join("\u0000");
      const into = seen.series.find((s) => s.values.join("\u0000") === key);
      if (into === undefined) {
        seen.series.push(structuredClone(series));
      } else if (seen.kind === "gauge" || seen.kind === "counter" || seen.kind === "histogram") {
        into.value += series.value;
        series.counts?.forEach((count, i) => into.counts![i]! += count);
      }
    }
  }
  let out = "";
  for (const metric of merged.values()) {
    out += `# HELP ${metric.name} ${
      escapeHelp(metric.help)
    }\n# TYPE ${metric.name} ${metric.kind}\n`;
    for (const series of metric.series) {
      if (metric.kind !== "histogram") {
        out += `${metric.name}${labelText(metric.labels, series.values)} ${
          formatNumber(series.value)
        }\n`;
        continue;
      }
      const bounds = [...metric.buckets!, Infinity];
      bounds.forEach((bound, i) => {
        const le = `le="${formatNumber(bound)}"`;
        out += `${metric.name}_bucket${labelText(metric.labels, series.values, le)} ${
          series.counts![i]
        }\n`;
      });
      const labels = labelText(metric.labels, series.values);
      out += `${metric.name}_sum${labels} ${formatNumber(series.value)}\n`;
      out += `${metric.name}_count${labels} ${series.counts![bounds.length - 1]}\n`;
    }
  }
  return out;
}

/**
 * A registry of metrics.
 *
 * @example
 * ```ts
 * import { Metrics } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * const metrics = new Metrics();
 * const queries = metrics.counter({ name: "queries_total", help: "Queries.", labels: ["type"] });
 * queries.inc({ type: "A" });
 * const latency = metrics.histogram({ name: "latency_seconds", help: "Latency.", buckets: [0.1, 1] });
 * latency.observe(0.05);
 * const text = metrics.expose();
 * assert.match(text, /^queries_total\{type="A"\} 1$/m);
 * assert.match(text, /^latency_seconds_bucket\{le="0.1"\} 1$/m);
 * assert.match(text, /^latency_seconds_count 1$/m);
 * ```
 */
export class Metrics {
  readonly #metrics = new Map<string, Metric>();
  readonly #collectors: (() => void)[] = [];

  #register<T extends Metric>(options: MetricOptions, make: (labels: readonly string[]) => T): T {
    if (!NAME.test(options.name)) {
      throw new TriadError(`Invalid metric name "${options.name}"`, { code: "bad_metric" });
    }
    const labels = options.labels ?? [];
    for (const label of labels) {
      if (!LABEL.test(label) || label.startsWith("__") || label === "le") {
        throw new TriadError(`Invalid label name "${label}" on metric ${options.name}`, {
          code: "bad_metric",
        });
      }
    }
    if (this.#metrics.has(options.name)) {
      throw new TriadError(`Metric ${options.name} is already registered`, { code: "bad_metric" });
    }
    const metric = make(labels);
    this.#metrics.set(options.name, metric);
    return metric;
  }

  /** Registers a counter. */
  counter(options: MetricOptions): Counter {
    return this.#register(options, (l) => new Counter("counter", options.name, options.help, l));
  }

  /** Registers a gauge. */
  gauge(options: MetricOptions): Gauge {
    return this.#register(options, (l) => new Gauge("gauge", options.name, options.help, l));
  }

  /** Registers a histogram. */
  histogram(options: HistogramOptions): Histogram {
    return this.#register(
      options,
      (l) => new Histogram(options.name, options.help, l, options.buckets ?? DEFAULT_BUCKETS),
    );
  }

  /**
   * Adds a function run before every snapshot, to set gauges from live state (cache size, say).
   *
   * @param collect The function.
   */
  onCollect(collect: () => void): void {
    this.#collectors.push(collect);
  }

  /** Returns every metric as plain data. */
  snapshot(): MetricSnapshot[] {
    for (const collect of this.#collectors) collect();
    return [...this.#metrics.values()].map((metric) => metric.snapshot());
  }

  /** Returns the Prometheus text exposition of every metric. */
  expose(): string {
    return formatPrometheus(this.snapshot());
  }
}
