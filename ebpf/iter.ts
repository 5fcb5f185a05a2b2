/**
 * {@linkcode readIterator}: reads what an iterator program (`bpf_iter`: `iter/task`,
 * `iter/tcp`, `iter/bpf_map_elem`, ...) writes, as chunks, lines or fixed-size records.
 *
 * @module
 */
import { errno, libbpf, libc } from "./_ffi.ts";
import { yieldToEventLoop } from "./_poller.ts";
import { BpfError } from "./errors.ts";
import type { Link } from "./link.ts";

const CHUNK = 64 * 1024;

/** Options for {@linkcode readIterator}. */
export interface ReadIteratorOptions {
  /** Bytes asked of the kernel per read (the kernel hands out at least a page). Default 64 KiB. */
  chunkSize?: number;
}

/**
 * One run of an iterator program over the kernel's objects. Every `read*` or iteration starts a
 * new run (a new `bpf_iter_create`), so it sees the objects as they are then. Reads are
 * synchronous (the program runs in the kernel for the length of a `read`, without waiting for
 * anything); between chunks the event loop gets a turn.
 */
export class IteratorOutput implements AsyncIterable<Uint8Array> {
  readonly #link: Link;
  readonly #chunkSize: number;

  /**
   * Wraps an iterator link.
   *
   * @param link From `Program.attachIter()`.
   * @param options The read size.
   */
  constructor(link: Link, options: ReadIteratorOptions = {}) {
    this.#link = link;
    this.#chunkSize = options.chunkSize ?? CHUNK;
  }

  /**
   * Runs the iterator and yields what it writes, chunk by chunk (each chunk a fresh array).
   *
   * @returns The chunks.
   */
  async *[Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
    const fd = libbpf().bpf_iter_create(this.#link.fd);
    if (fd < 0) throw BpfError.fromErrno(`Start iterator ${this.#link.description}`, fd);
    try {
      const buffer = new Uint8Array(this.#chunkSize);
      for (;;) {
        const n = Number(libc().read(fd, buffer, BigInt(buffer.length)));
        if (n < 0) {
          const code = errno();
          if (code === 4 || code === 11) continue; // EINTR, EAGAIN: the kernel asks to retry
          throw BpfError.fromErrno(`Read iterator ${this.#link.description}`, -code);
        }
        if (n === 0) return;
        yield buffer.slice(0, n);
        await yieldToEventLoop();
      }
    } finally {
      libc().close(fd);
    }
  }

  /**
   * Runs the iterator and yields its output line by line (UTF-8, without the newline).
   *
   * @returns The lines.
   */
  async *lines(): AsyncIterableIterator<string> {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of this) {
      const text = rest + decoder.decode(chunk, { stream: true });
      const lines = text.split("\n");
      rest = lines.pop()!;
      yield* lines;
    }
    rest += decoder.decode();
    if (rest !== "") yield rest;
  }

  /**
   * Runs the iterator and yields fixed-size binary records (written with `bpf_seq_write`), each
   * a `DataView` of its own; decode with a generated view (`new TcpSocketView(record)`).
   *
   * @param size The record size in bytes.
   * @returns The records.
   */
  async *records(size: number): AsyncIterableIterator<DataView> {
    if (!Number.isInteger(size) || size <= 0) {
      throw new BpfError(`Record size must be a positive integer, got ${size}`, {
        code: "bad_value",
      });
    }
    let pending = new Uint8Array(0);
    for await (const chunk of this) {
      const bytes = pending.length === 0 ? chunk : concat(pending, chunk);
      const whole = bytes.length - (bytes.length % size);
      for (let offset = 0; offset < whole; offset += size) {
        yield new DataView(bytes.buffer, bytes.byteOffset + offset, size);
      }
      pending = bytes.slice(whole);
    }
    if (pending.length !== 0) {
      throw new BpfError(
        `Iterator ${this.#link.description} ended inside a record: ${pending.length} bytes left ` +
          `over with records of ${size} bytes`,
        { code: "bad_record" },
      );
    }
  }

  /**
   * Runs the iterator and returns its whole output as text.
   *
   * @returns The text.
   */
  async text(): Promise<string> {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of this) text += decoder.decode(chunk, { stream: true });
    return text + decoder.decode();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Reads what an attached iterator program writes. Each iteration (or `lines()`, `records()`,
 * `text()`) runs the program over the kernel's objects again.
 *
 * @example Every TCP socket, as generated views over binary records
 * ```ts ignore
 * import { readIterator } from "@triad/ebpf";
 * import { IterObject, TCP_SOCKET_SIZE, TcpSocketView } from "./iter.gen.ts";
 *
 * using obj = IterObject.open();
 * await obj.load();
 * using link = obj.programs.dump_tcp.attachIter();
 * for await (const record of readIterator(link).records(TCP_SOCKET_SIZE)) {
 *   console.log(new TcpSocketView(record).local_port);
 * }
 * ```
 *
 * @param link From `Program.attachIter()`.
 * @param options The read size.
 * @returns The output, to iterate.
 */
export function readIterator(link: Link, options: ReadIteratorOptions = {}): IteratorOutput {
  return new IteratorOutput(link, options);
}
