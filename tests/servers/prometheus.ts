/**
 * Starts a real Prometheus (Debian's `prometheus` package) on a loopback port with its own data
 * directory, scraping the given targets every second and evaluating the given rule files every
 * second. Readiness and scrapes are awaited by polling its HTTP API. Stop it with `await using`.
 *
 * @module
 */
import { freePort } from "./free_port.ts";
import { supervise } from "./supervised_child.ts";

/** A PromQL instant-query result sample. */
export interface Sample {
  /** The labels. */
  metric: Record<string, string>;
  /** `[time, "value"]`. */
  value: [number, string];
}

/** A running Prometheus. */
export interface PrometheusServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /**
   * Runs an instant query.
   *
   * @throws {Error} When Prometheus refuses the query (naming it and the error).
   */
  query(expr: string): Promise<Sample[]>;
  /** Polls until every target of `job` has been scraped successfully `scrapes` times. */
  waitForScrapes(job: string, scrapes: number): Promise<void>;
  /** The rule groups as `/api/v1/rules` reports them. */
  rules(): Promise<{ name: string; health: string; lastError?: string; query: string }[]>;
  /** Stops it and removes its directory. */
  stop(): Promise<void>;
}

async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Starts Prometheus and waits for `/-/ready`.
 *
 * @param jobs Job name to `host:port` targets (scraped at `/metrics`).
 * @param ruleFiles Absolute paths of rule files to load.
 * @returns The running server.
 */
export async function startPrometheus(
  jobs: Record<string, string[]>,
  ruleFiles: string[] = [],
): Promise<PrometheusServer> {
  const dir = await Deno.makeTempDir({ prefix: "triad-prometheus-" });
  const port = await freePort();
  const config = {
    global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
    rule_files: ruleFiles,
    scrape_configs: Object.entries(jobs).map(([job, targets]) => ({
      job_name: job,
      static_configs: [{ targets }],
    })),
  };
  // JSON is YAML: no serializer needed
  await Deno.writeTextFile(`${dir}/prometheus.yml`, JSON.stringify(config, null, 2));
  const child = new Deno.Command("prometheus", {
    args: [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const supervised = supervise(child);
  const stop = async () => {
    await supervised.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const url = `http://127.0.0.1:${port}`;
  try {
    await until("Prometheus /-/ready", 30_000, async () => {
      if (supervised.exited()) throw new Error(`prometheus exited: ${supervised.log()}`);
      const response = await fetch(`${url}/-/ready`);
      await response.body?.cancel();
      return response.status === 200 ? true : undefined;
    });
  } catch (error) {
    await stop();
    throw new Error(`${error instanceof Error ? error.message : error}: ${supervised.log()}`);
  }
  const api = async (path: string) => {
    const body = await (await fetch(`${url}/api/v1/${path}`)).json();
    if (body.status !== "success") throw new Error(`${path}: ${body.errorType}: ${body.error}`);
    return body.data;
  };
  return {
    url,
    query: async (expr) => {
      const data = await api(`query?query=${encodeURIComponent(expr)}`)
        .catch((error) => Promise.reject(new Error(`${expr}: ${error.message}`)));
      return data.result as Sample[];
    },
    waitForScrapes: async (job, scrapes) => {
      await until(`${scrapes} scrapes of ${job}`, 30_000, async () => {
        const expr = `min(count_over_time(up{job="${job}"}[5m]) and up{job="${job}"} == 1)`;
        const data = await api(`query?query=${encodeURIComponent(expr)}`);
        const count = Number(data.result[0]?.value[1] ?? 0);
        return count >= scrapes ? true : undefined;
      });
    },
    rules: async () => {
      const data = await api("rules");
      // deno-lint-ignore no-explicit-any
      return data.groups.flatMap((group: any) => group.rules);
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
