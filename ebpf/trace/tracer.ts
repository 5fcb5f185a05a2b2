/**
 * `TcpTracer`: loads `tcptrace.bpf.c` with the filters in rodata, attaches it, and yields decoded
 * events (and `lost` reports) from its ring buffer until closed.
 *
 * @module
 */

import { TriadError } from "@triad/core";
import {
  decodeEvent,
  EVENT_RECORD_SIZE,
  KernelClock,
  lostEvent,
  type TraceEvent,
} from "./event.ts";
import { cString, errno, libs, strerror, toCString } from "./_libbpf.ts";
import { TCPTRACE_OBJECT } from "../bpf/tcptrace.gen.ts";

/** Kernel-side filters and sizes. */
export interface TracerOptions {
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

/** Loading or attaching the tracer failed; `code` says which step. */
export class TracerError extends TriadError {}

const DEFAULT_RING_BYTES = 8 * 1024 * 1024;
const BTF_KIND_VAR = 14;
const BTF_KIND_DATASEC = 15;
// With wakeups batched in the kernel (wakeup_bytes), this bounds how late a quiet event shows.
const POLL_MS = 50;
const LOST_CHECK_MS = 200;

type Pointer = NonNullable<Deno.PointerValue>;

function fail(step: string, code: number): never {
  const hint = code === 1 // EPERM
    ? ": needs root, or CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE"
    : "";
  throw new TracerError(`Cannot ${step}: ${strerror(code)} (errno ${code})${hint}`, {
    code: code === 1 ? "permission" : "load",
  });
}

/** The values of the rodata variables, by name. */
function rodataValues(options: TracerOptions): Map<string, Uint8Array> {
  const values = new Map<string, Uint8Array>();
  const u32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer);
  const u16 = (n: number) => new Uint8Array(new Uint16Array([n]).buffer);
  if (options.pid) values.set("filter_pid", u32(options.pid));
  if (options.port) values.set("filter_port", u16(options.port));
  if (options.family) values.set("filter_family", new Uint8Array([options.family]));
  if (options.states) values.set("emit_states", new Uint8Array([1]));
  const ringBytes = options.ringBytes ?? DEFAULT_RING_BYTES;
  values.set("wakeup_bytes", u32(options.wakeupBytes ?? Math.min(ringBytes / 4, 256 * 1024)));
  if (options.comm) {
    const comm = new Uint8Array(16);
    comm.set(new TextEncoder().encode(options.comm).subarray(0, 15));
    values.set("filter_comm", comm);
  }
  return values;
}

/**
 * The TCP connection tracer's kernel side, loaded and attached.
 *
 * ```ts ignore
 * import { TcpTracer } from "./tracer.ts";
 * await using tracer = TcpTracer.open({ port: 443 });
 * for await (const batch of tracer.batches()) for (const event of batch) console.log(event);
 * ```
 */
export class TcpTracer implements AsyncDisposable {
  /**
   * Wake the reader once this many bytes are queued; quieter events wait for the next poll
   * (at most 50 ms). 0 wakes it for every record. @default min(ringBytes / 4, 256 KiB)
   */
  wakeupBytes?: number;
  /** How accept() is observed: `fexit` (inet_csk_accept) or `syscall` (accept/accept4 exits). */
  readonly acceptHook: "fexit" | "syscall";
  #object: Pointer;
  #links: Pointer[];
  #ring: Pointer | null = null;
  #polling: Promise<void> | undefined;
  #stopPolling: (() => void) | undefined;
  #callback: Deno.UnsafeCallback<
    { readonly parameters: readonly ["pointer", "pointer", "usize"]; readonly result: "i32" }
  >;
  #lostFd: number;
  #lostBuffer: Uint8Array<ArrayBuffer>;
  #lostSeen = 0n;
  #pending: TraceEvent[] = [];
  #clock = new KernelClock();
  #closed = false;
  #destroyed = false;
  #epollEvents = new Uint8Array(12 * 4);
  #record = new Uint8Array(EVENT_RECORD_SIZE);

  private constructor(
    object: Pointer,
    links: Pointer[],
    acceptHook: "fexit" | "syscall",
  ) {
    const { bpf } = libs();
    this.#object = object;
    this.#links = links;
    this.acceptHook = acceptHook;
    this.#callback = new Deno.UnsafeCallback(
      { parameters: ["pointer", "pointer", "usize"], result: "i32" } as const,
      (_ctx, data, size) => {
        if (data === null || Number(size) < EVENT_RECORD_SIZE) return 0;
        // one copy into a reused buffer: no allocation per record
        Deno.UnsafePointerView.copyInto(data, this.#record);
        try {
          this.#pending.push(decodeEvent(this.#record, this.#clock));
        } catch {
          // a record this version does not understand: skip it, never crash the stream
        }
        return 0;
      },
    );
    const events = TcpTracer.#map(object, "tcptrace_events");
    const ring = bpf.ring_buffer__new(bpf.bpf_map__fd(events), this.#callback.pointer, null, null);
    if (ring === null) {
      const code = errno();
      this.#destroy();
      fail("create the ring buffer reader", code);
    }
    this.#ring = ring;
    this.#lostFd = bpf.bpf_map__fd(TcpTracer.#map(object, "tcptrace_lost"));
    this.#lostBuffer = new Uint8Array(8 * Math.max(1, bpf.libbpf_num_possible_cpus()));
  }

  /**
   * Loads and attaches the tracer.
   *
   * @param options Filters and sizes.
   * @returns The attached tracer; close it (or `await using`) to detach everything.
   * @throws {TracerError} When loading or attaching fails (the message names the errno and fix).
   */
  static open(options: TracerOptions = {}): TcpTracer {
    const hook = options.acceptHook ?? "auto";
    if (hook !== "syscall") {
      try {
        return TcpTracer.#openVariant(options, "fexit");
      } catch (error) {
        if (hook === "fexit") throw error;
      }
    }
    return TcpTracer.#openVariant(options, "syscall");
  }

  static #openVariant(options: TracerOptions, acceptHook: "fexit" | "syscall"): TcpTracer {
    const { bpf } = libs();
    const object = bpf.bpf_object__open_mem(TCPTRACE_OBJECT, BigInt(TCPTRACE_OBJECT.length), null);
    if (object === null) fail("open the tcptrace BPF object", errno());
    const links: Pointer[] = [];
    // The fexit attempt is expected to fail on kernels without fentry: keep libbpf quiet then.
    const previousPrint = acceptHook === "fexit" ? bpf.libbpf_set_print(null) : undefined;
    try {
      TcpTracer.#setRodata(object, rodataValues(options));
      const ring = TcpTracer.#map(object, "tcptrace_events");
      const ringBytes = options.ringBytes ?? DEFAULT_RING_BYTES;
      if (bpf.bpf_map__set_max_entries(ring, ringBytes) !== 0) {
        fail(`size the ring buffer to ${ringBytes} bytes`, errno());
      }
      const wanted = acceptHook === "fexit"
        ? ["inet_sock_set_state", "inet_csk_accept_exit"]
        : ["inet_sock_set_state", "sys_exit_accept4", "sys_exit_accept"];
      const programs: Pointer[] = [];
      for (
        let p = bpf.bpf_object__next_program(object, null);
        p;
        p = bpf.bpf_object__next_program(object, p)
      ) {
        const load = wanted.includes(cString(bpf.bpf_program__name(p)));
        bpf.bpf_program__set_autoload(p, load);
        if (load) programs.push(p);
      }
      const result = bpf.bpf_object__load(object);
      if (result !== 0) fail(`load the tcptrace BPF programs (${acceptHook} variant)`, -result);
      for (const program of programs) {
        const link = bpf.bpf_program__attach(program);
        if (link === null) {
          fail(`attach ${cString(bpf.bpf_program__name(program))}`, errno());
        }
        links.push(link);
      }
      return new TcpTracer(object, links, acceptHook);
    } catch (error) {
      for (const link of links) bpf.bpf_link__destroy(link);
      bpf.bpf_object__close(object);
      throw error;
    } finally {
      if (previousPrint !== undefined) bpf.libbpf_set_print(previousPrint);
    }
  }

  static #map(object: Pointer, name: string): Pointer {
    const { bpf } = libs();
    for (
      let m = bpf.bpf_object__next_map(object, null);
      m;
      m = bpf.bpf_object__next_map(object, m)
    ) {
      const mapName = cString(bpf.bpf_map__name(m));
      if (mapName === name || (name.startsWith(".") && mapName.endsWith(name))) return m;
    }
    throw new TracerError(`The tcptrace BPF object has no map named ${name}`, { code: "object" });
  }

  static #setRodata(object: Pointer, values: Map<string, Uint8Array>): void {
    if (values.size === 0) return;
    const { bpf } = libs();
    const map = TcpTracer.#map(object, ".rodata");
    const sizeOut = new BigUint64Array(1);
    const initial = bpf.bpf_map__initial_value(map, new Uint8Array(sizeOut.buffer));
    if (initial === null) fail("read the rodata of tcptrace", errno());
    const data = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(initial, Number(sizeOut[0])).slice(0),
    );
    const btf = bpf.bpf_object__btf(object);
    const id = bpf.btf__find_by_name_kind(btf, toCString(".rodata"), BTF_KIND_DATASEC);
    if (id < 0) {
      throw new TracerError("The tcptrace BPF object has no .rodata BTF", { code: "object" });
    }
    const section = new Deno.UnsafePointerView(bpf.btf__type_by_id(btf, id)!);
    const count = section.getUint32(4) & 0xffff;
    const found = new Set<string>();
    for (let i = 0; i < count; i++) {
      const at = 12 + i * 12;
      const variable = new Deno.UnsafePointerView(bpf.btf__type_by_id(btf, section.getUint32(at))!);
      if (((variable.getUint32(4) >> 24) & 0x1f) !== BTF_KIND_VAR) continue;
      const name = cString(bpf.btf__name_by_offset(btf, variable.getUint32(0)));
      const value = values.get(name);
      if (value === undefined) continue;
      const offset = section.getUint32(at + 4);
      const size = section.getUint32(at + 8);
      if (value.length !== size) {
        throw new TracerError(`Rodata variable ${name} is ${size} bytes, got ${value.length}`, {
          code: "object",
        });
      }
      data.set(value, offset);
      found.add(name);
    }
    for (const name of values.keys()) {
      if (!found.has(name)) {
        throw new TracerError(`The tcptrace BPF object has no rodata variable ${name}`, {
          code: "object",
        });
      }
    }
    if (bpf.bpf_map__set_initial_value(map, data, BigInt(data.length)) !== 0) {
      fail("set the tcptrace filters", errno());
    }
  }

  /**
   * Total events the kernel could not queue so far (the per-CPU `lost` counters summed).
   *
   * @returns The count.
   */
  lost(): number {
    const { bpf } = libs();
    let total = 0n;
    for (const slot of [0, 1]) {
      if (
        bpf.bpf_map_lookup_elem(
          this.#lostFd,
          new Uint8Array(new Uint32Array([slot]).buffer),
          this.#lostBuffer,
        ) !== 0
      ) {
        continue;
      }
      const view = new BigUint64Array(this.#lostBuffer.buffer);
      for (const value of view) total += value;
    }
    return Number(total);
  }

  /**
   * Yields events as the kernel emits them, and a `lost` event whenever the lost counter grew,
   * until `close()` or the signal aborts. Never blocks the event loop: waiting happens on a
   * separate thread (epoll on the ring buffer), decoding on this one.
   *
   * @param signal Stops the iteration.
   * @returns The events, in batches as they arrive.
   */
  async *batches(signal?: AbortSignal): AsyncGenerator<TraceEvent[]> {
    const { bpf, libc } = libs();
    if (this.#ring === null || this.#polling) return;
    const ring = this.#ring;
    const epollFd = bpf.ring_buffer__epoll_fd(ring);
    let lostCheckedAt = 0;
    this.#polling = new Promise((resolve) => this.#stopPolling = resolve);
    try {
      while (!this.#closed && !signal?.aborted) {
        await libc.epoll_wait(epollFd, this.#epollEvents, 4, POLL_MS);
        if (this.#closed) break;
        bpf.ring_buffer__consume(ring);
        const now = Date.now();
        if (now - lostCheckedAt >= LOST_CHECK_MS) {
          lostCheckedAt = now;
          const total = BigInt(this.lost());
          if (total > this.#lostSeen) {
            this.#pending.push(lostEvent(Number(total - this.#lostSeen)));
            this.#lostSeen = total;
          }
        }
        if (this.#pending.length > 0) {
          const batch = this.#pending;
          this.#pending = [];
          yield batch;
        }
      }
    } finally {
      // close() during a wait leaves the teardown to here, after the waiting thread returned
      if (this.#closed) this.#destroy();
      this.#polling = undefined;
      this.#stopPolling?.();
    }
  }

  /** Detaches every program, frees the ring buffer and closes the object. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#polling) this.#destroy();
  }

  #destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    const { bpf } = libs();
    for (const link of this.#links) bpf.bpf_link__destroy(link);
    this.#links = [];
    if (this.#ring) bpf.ring_buffer__free(this.#ring);
    this.#ring = null;
    bpf.bpf_object__close(this.#object);
    this.#callback.close();
  }

  /** Same as `close()`, and waits until a running `batches()` loop has let go. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#polling;
  }
}
