/**
 * `TcpTracer`: loads `tcptrace.bpf.c` (through its bpf2ts skeleton) with the filters in rodata,
 * attaches it, and yields decoded events (and `lost` reports) from its ring buffer until closed.
 *
 * @module
 */

import { BpfError, type Link, RingBufferReader } from "@triad/ebpf";
import { TcptraceObject } from "../bpf/tcptrace.gen.ts";
import { decodeEvent } from "./decode_event.ts";
import { KernelClock } from "./kernel_clock.ts";
import { lostEvent, type TraceEvent } from "./trace_event.ts";

/** Kernel-side filters and sizes. */
interface TracerOptions {
  /** Only sockets owned by this pid. */
  pid?: number;
  /** Only sockets owned by processes with this command name. */
  comm?: string;
  /** Only connections with this port on either side. */
  port?: number;
  /** Only this IP family. */
  family?: 4 | 6;
  /** Emit `state` events for every transition. */
  states?: boolean;
  /** Ring buffer size in bytes (a power of two, at least a page). @default 8 MiB */
  ringBytes?: number;
  /**
   * Wake the reader once this many bytes are queued; quieter events wait for the next poll
   * (at most 50 ms). 0 wakes it for every record. @default min(ringBytes / 4, 256 KiB)
   */
  wakeupBytes?: number;
  /** How accept() is observed: `auto` tries fexit and falls back to the syscall tracepoints. */
  acceptHook?: "auto" | "fexit" | "syscall";
}

type AcceptHook = "fexit" | "syscall";

const DEFAULT_RING_BYTES = 8 * 1024 * 1024;
// With wakeups batched in the kernel (wakeup_bytes), this bounds how late a quiet event shows.
const POLL_MS = 50;
const LOST_CHECK_MS = 200;

/**
 * The TCP connection tracer's kernel side, loaded and attached.
 *
 * ```ts ignore
 * import { TcpTracer } from "./tcp_tracer.ts";
 * await using tracer = await TcpTracer.open({ port: 443 });
 * for await (const batch of tracer.batches()) for (const event of batch) console.log(event);
 * ```
 */
export class TcpTracer implements AsyncDisposable {
  /** How accept() is observed: `fexit` (inet_csk_accept) or `syscall` (accept/accept4 exits). */
  readonly acceptHook: AcceptHook;
  /** Why the fexit flavour was not used, when it was tried and failed. */
  readonly fallbackReason: string | undefined;
  #skeleton: TcptraceObject;
  #links: Link[];
  #programFds: number[];
  #reader: RingBufferReader;
  #lostSeen = 0;
  #undecodable = 0;
  #clock = new KernelClock();
  #closed = false;
  #polling: Promise<void> | undefined;

  private constructor(
    skeleton: TcptraceObject,
    links: Link[],
    programFds: number[],
    acceptHook: AcceptHook,
    fallbackReason: string | undefined,
  ) {
    this.#skeleton = skeleton;
    this.#links = links;
    this.#programFds = programFds;
    this.acceptHook = acceptHook;
    this.fallbackReason = fallbackReason;
    this.#reader = new RingBufferReader(skeleton.maps.tcptrace_events, {
      lost: () => this.lost(),
      pollIntervalMs: POLL_MS,
    });
  }

  /**
   * Loads and attaches the tracer: the fexit flavour where fentry programs load, else the
   * syscall tracepoints for accept().
   *
   * @param options Filters and sizes.
   * @returns The attached tracer; close it (or `await using`) to detach everything.
   * @throws {BpfError} When loading or attaching fails (the message names the errno and fix).
   */
  static async open(options: TracerOptions = {}): Promise<TcpTracer> {
    const hook = options.acceptHook ?? "auto";
    let fallbackReason: string | undefined;
    if (hook !== "syscall") {
      try {
        return await TcpTracer.#openVariant(options, "fexit", undefined);
      } catch (error) {
        if (hook === "fexit") {
          if (!(error instanceof BpfError) || error.errno === 0) throw error;
          throw new BpfError(
            `The fexit flavour (fexit/inet_csk_accept) did not load: errno ${error.errno} ` +
              `(${error.code}); this kernel refuses fentry/fexit programs (they need Linux 5.17+ ` +
              `with BTF trampolines): use --accept-hook auto or syscall`,
            { errno: error.errno, code: error.code, cause: error },
          );
        }
        // the generic fix an EPERM message suggests (capabilities) is wrong here: privileges
        // were checked and the tracepoints load; fentry itself is refused by this kernel
        fallbackReason = error instanceof BpfError && error.errno !== 0
          ? `errno ${error.errno} (${error.code})`
          : error instanceof Error
          ? error.message.split("\n")[0]!
          : String(error);
      }
    }
    return await TcpTracer.#openVariant(options, "syscall", fallbackReason);
  }

  static async #openVariant(
    options: TracerOptions,
    acceptHook: AcceptHook,
    fallbackReason: string | undefined,
  ): Promise<TcpTracer> {
    const ringBytes = options.ringBytes ?? DEFAULT_RING_BYTES;
    const fexit = acceptHook === "fexit";
    const skeleton = TcptraceObject.open({
      globals: {
        filter_pid: options.pid ?? 0,
        filter_port: options.port ?? 0,
        filter_family: options.family ?? 0,
        emit_states: options.states ? 1 : 0,
        filter_comm: options.comm ?? "",
        wakeup_bytes: options.wakeupBytes ?? Math.min(ringBytes / 4, 256 * 1024),
      },
      maxEntries: { tcptrace_events: ringBytes },
      autoload: { inet_csk_accept_exit: fexit, sys_exit_accept4: !fexit, sys_exit_accept: !fexit },
    });
    const links: Link[] = [];
    try {
      await skeleton.load();
      const programs = skeleton.programs;
      links.push(programs.inet_sock_set_state.attach());
      if (fexit) {
        links.push(programs.inet_csk_accept_exit.attach());
      } else {
        links.push(programs.sys_exit_accept4.attach(), programs.sys_exit_accept.attach());
      }
      const attached = [programs.inet_sock_set_state].concat(
        fexit
          ? [programs.inet_csk_accept_exit]
          : [programs.sys_exit_accept4, programs.sys_exit_accept],
      );
      return new TcpTracer(
        skeleton,
        links,
        attached.map((program) => program.fd),
        acceptHook,
        fallbackReason,
      );
    } catch (error) {
      for (const link of links) link.close();
      skeleton.close();
      throw error;
    }
  }

  /** Records that could not be decoded (a newer object's record types, say). */
  get undecodable(): number {
    return this.#undecodable;
  }

  /**
   * Total events the kernel could not queue so far: ring buffer reservations that failed,
   * sockets the tracking table had no room for (the per-CPU `tcptrace_lost` slots, summed), and
   * runs of the programs the kernel skipped because another tracing program was running on that
   * CPU (`recursion_misses`, such as a softirq's state change interrupting one of ours; each may
   * have been an event).
   *
   * @returns The count.
   */
  lost(): number {
    if (this.#destroyed) return this.#lostSeen; // the map is gone: the last count read
    const lost = this.#skeleton.maps.tcptrace_lost;
    let total = 0n;
    for (const slot of [0, 1]) {
      for (const value of lost.lookupPerCpu(slot) ?? []) total += value;
    }
    return Number(total) + this.#recursionMisses();
  }

  #recursionMisses(): number {
    let misses = 0;
    for (const fd of this.#programFds) {
      try {
        const fdinfo = Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`);
        misses += Number(/^recursion_misses:\s*(\d+)$/m.exec(fdinfo)?.[1] ?? 0);
      } catch {
        // kernels before 5.12 do not count them
      }
    }
    return misses;
  }

  /**
   * Yields events as the kernel emits them, in batches, and a `lost` event whenever the lost
   * counter grew, until `close()` or the signal aborts; after an abort, what the ring still
   * holds is drained into one last batch. Never blocks the event loop: waiting happens on a
   * worker thread, records are decoded in place from the mmapped ring.
   *
   * @param signal Stops the iteration.
   * @returns The events, in batches as they arrive.
   */
  async *batches(signal?: AbortSignal): AsyncGenerator<TraceEvent[]> {
    if (this.#closed || this.#polling) return;
    let release = () => {};
    this.#polling = new Promise((resolve) => release = resolve);
    let lostCheckedAt = 0;
    try {
      while (!this.#closed) {
        // Stopping still drains what the kernel queued before: a stop loses nothing silently.
        const stopping = signal?.aborted ?? false;
        if (!stopping) await this.#reader.wait(POLL_MS);
        if (this.#closed) break;
        const batch: TraceEvent[] = [];
        // drain() hands the ring's mapping and an offset: no view object per record
        this.#reader.drain((ring, offset) => {
          try {
            batch.push(decodeEvent(ring, this.#clock, offset));
          } catch (error) {
            // a record this version does not understand: counted and reported, never fatal
            this.#undecodable++;
            if (this.#undecodable === 1) console.error(`trace: undecodable record: ${error}`);
          }
        });
        const now = Date.now();
        if (stopping || now - lostCheckedAt >= LOST_CHECK_MS) {
          lostCheckedAt = now;
          const total = this.lost();
          if (total > this.#lostSeen) {
            batch.push(lostEvent(total - this.#lostSeen));
            this.#lostSeen = total;
          }
        }
        if (batch.length > 0) yield batch;
        if (stopping) break;
      }
    } finally {
      this.#polling = undefined;
      release();
      if (this.#closed) await this.#destroy();
    }
  }

  /**
   * Detaches every program, unmaps the ring buffer and closes the object. Idempotent; a
   * `batches()` loop waiting for records is woken and ends.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#destroy();
  }

  #destroyed = false;

  async #destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    await this.#reader[Symbol.asyncDispose]();
    for (const link of this.#links) link.close();
    this.#links = [];
    this.#skeleton.close();
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
