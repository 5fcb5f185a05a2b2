/**
 * Runs `deno task dns` as its own process, the way a container runs it: the task's command line
 * from deno.json, the configuration from a directory laid out like a Kubernetes ConfigMap volume
 * (`dnsproxy.yaml -> ..data/dnsproxy.yaml`, `..data -> ..<version>`), so that `update()` swaps
 * `..data` exactly as the kubelet does.
 *
 * @module
 */
import { freePort } from "./free_port.ts";
import { startTaskProcess } from "./task_process.ts";

/** A running proxy process. */
export interface DnsProxyProcess extends AsyncDisposable {
  /** The DNS port on 127.0.0.1 (UDP and TCP). */
  readonly port: number;
  /** `http://127.0.0.1:<port>`: `/metrics`, `/health/live`, `/health/ready`. */
  readonly http: string;
  /** `127.0.0.1:<port>` of the HTTP server (a Prometheus target). */
  readonly httpAddress: string;
  /** Writes a new version of the file and swaps `..data` to it, like a ConfigMap update. */
  update(yaml: string): Promise<void>;
  /** What the process wrote to stderr so far (its JSON log lines). */
  log(): string;
  /** Sends SIGTERM and returns the exit status (SIGKILL after 5 s). */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Starts the proxy with this file as its ConfigMap and waits until `/health/live` answers 200.
 *
 * @param yaml The content of `dnsproxy.yaml` (listen and metrics are given as flags).
 * @returns The running process; `stop()` or `await using` ends it and removes its directory.
 */
export async function startDnsProxyProcess(yaml: string): Promise<DnsProxyProcess> {
  const dir = await Deno.makeTempDir({ prefix: "triad-dnsproxy-configmap-" });
  let version = 0;
  const update = async (text: string) => {
    const name = `..${++version}`;
    await Deno.mkdir(`${dir}/${name}`);
    await Deno.writeTextFile(`${dir}/${name}/dnsproxy.yaml`, text);
    // the kubelet's swap: a new symlink renamed over ..data, one atomic step
    await Deno.symlink(name, `${dir}/..data_tmp`);
    await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
  };
  await update(yaml);
  await Deno.symlink("..data/dnsproxy.yaml", `${dir}/dnsproxy.yaml`);
  const port = await freePort();
  const httpPort = await freePort();
  const http = `http://127.0.0.1:${httpPort}`;
  const args = ["--config", `${dir}/dnsproxy.yaml`, "--listen", `127.0.0.1:${port}`];
  const task = await startTaskProcess("dns", [...args, "--metrics", `127.0.0.1:${httpPort}`], http)
    .catch(async (error) => {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw error;
    });
  const stop = async () => {
    const status = await task.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    return status;
  };
  return {
    port,
    http,
    httpAddress: `127.0.0.1:${httpPort}`,
    update,
    log: task.log,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}
