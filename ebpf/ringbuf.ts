/**
 * {@linkcode RingBufferReader}: reads a `BPF_MAP_TYPE_RINGBUF` map. The ring is mmapped and
 * records are read in TypeScript; waiting for data is an `epoll_wait` on a worker thread, so
 * Deno's event loop never blocks.
 *
 * @module
 */
import { pageSize } from "./_ffi.ts";
import { mmap, munmap, yieldToEventLoop } from "./_poller.ts";
import { RecordReader, SMALL_RECORD } from "./record_reader.ts";
import { BpfError } from "./errors.ts";
import type { BpfMap } from "./map.ts";

const BUSY_BIT = 0x80000000;
const DISCARD_BIT = 0x40000000;
const HEADER = 8;
/** How long a `for await` over a busy ring runs before it lets the event loop turn. */
const SLICE_MS = 5;

/** Options for {@linkcode RingBufferReader}. */
export interface RingBufferOptions {
  /**
   * Yield a copy of each record (valid forever) instead of a view valid until the next record is
   * read (a view into the ring, or, for `for await` and records of up to 256 bytes, one view the
   * reader reuses).
   */
  copy?: boolean;
  /**
   * Reads the program's own count of records it could not reserve (the ring buffer has no
   * kernel-side loss counter). Convention: a `__u64 dropped` global incremented when
   * `bpf_ringbuf_reserve` returns NULL, read with `() => obj.readGlobal("dropped")`.
   */
  lost?: () => number | bigint;
  /** How long one wait for data lasts before checking again, in ms. */
  pollIntervalMs?: number;
}

/**
 * Reads records from a BPF ring buffer map as an async iterable of `DataView`s.
 *
 * Each record is valid until the next record is read (the space is then given back to the
 * kernel): a zero-copy view into the shared ring, or, under `for await`, a record of up to 256
 * bytes copied into one view the reader reuses (no allocation per record); pass `copy: true` to
 * keep records. Loss: the kernel
 * keeps no count for ring buffers, so the convention is a `dropped` counter in the program,
 * incremented when `bpf_ringbuf_reserve` fails, surfaced through the `lost` option.
 *
 * @example
 * ```ts ignore
 * import { BpfObject, RingBufferReader } from "@triad/ebpf";
 *
 * using obj = BpfObject.open("prog.bpf.o");
 * await obj.load();
 * using link = obj.program("handle_exec").attach();
 * await using reader = new RingBufferReader(obj.map("events"), {
 *   lost: () => obj.readGlobal("dropped"),
 * });
 * for await (const record of reader) {
 *   console.log(record.getUint32(0, true)); // valid until the next record
 * }
 * ```
 */
export class RingBufferReader extends RecordReader {
  /** The ring's data size in bytes. */
  readonly size: number;
  readonly #page: number;
  readonly #consumer: Deno.PointerObject;
  readonly #producer: Deno.PointerObject;
  readonly #producerLength: number;
  #data: ArrayBuffer;
  #view: DataView;
  /** The mapping as bytes (`for await` copies small records out of it). */
  #bytes: Uint8Array;
  #length = 0;
  #consumerBuffer: ArrayBuffer;
  #consumerLow: Uint32Array;
  #consumerPos: BigUint64Array;
  #producerPos: BigUint64Array;
  #headers: Int32Array;
  readonly #mask: number;
  readonly #copy: boolean;
  readonly #lost: (() => number | bigint) | undefined;
  #consumed: number;
  #committed: number;
  #produced = 0;
  #records = 0;

  /**
   * Maps a ring buffer map for reading.
   *
   * @param map The `ringbuf` map (from a loaded object).
   * @param options Copying, the lost counter, the poll interval.
   */
  constructor(map: BpfMap<unknown, unknown>, options: RingBufferOptions = {}) {
    super(options.pollIntervalMs ?? 1000);
    if (map.type !== "ringbuf") {
      throw new BpfError(`Map ${map.name} is ${map.type}, not ringbuf`, { code: "bad_map_type" });
    }
    const fd = map.fd;
    this.size = map.maxEntries;
    this.#mask = this.size - 1;
    this.#page = pageSize();
    this.#copy = options.copy ?? false;
    this.#lost = options.lost;
    this.#consumer = mmap(this.#page, true, fd, 0);
    this.#producerLength = this.#page + 2 * this.size;
    try {
      this.#producer = mmap(this.#producerLength, false, fd, this.#page);
    } catch (error) {
      munmap(this.#consumer, this.#page);
      throw error;
    }
    this.#consumerBuffer = Deno.UnsafePointerView.getArrayBuffer(this.#consumer, this.#page);
    this.#consumerLow = new Uint32Array(this.#consumerBuffer, 0, 2);
    this.#consumerPos = new BigUint64Array(this.#consumerBuffer, 0, 1);
    this.#data = Deno.UnsafePointerView.getArrayBuffer(this.#producer, this.#producerLength);
    this.#producerPos = new BigUint64Array(this.#data, 0, 1);
    this.#view = new DataView(this.#data);
    this.#bytes = new Uint8Array(this.#data);
    // The data area follows the producer page and is mapped twice, so no record wraps.
    this.#headers = new Int32Array(this.#data, this.#page, (2 * this.size) / 4);
    this.#consumed = Number(Atomics.load(this.#consumerPos, 0));
    this.#committed = this.#consumed;
    try {
      this.watch(fd, 0);
    } catch (error) {
      this.abandon();
      munmap(this.#consumer, this.#page);
      munmap(this.#producer, this.#producerLength);
      throw error;
    }
  }

  /** Records read so far. */
  get records(): number {
    return this.#records;
  }

  /** Records the program could not reserve, by the `lost` counter convention (0 without it). */
  get lost(): number {
    const value = this.#lost?.() ?? 0;
    return Number(value);
  }

  /** Bytes written by the kernel and not yet read. */
  get pending(): number {
    return Number(Atomics.load(this.#producerPos, 0)) - this.#consumed;
  }

  /**
   * Reads the next record if one is ready, without waiting. Gives the previous record's space
   * back to the kernel.
   *
   * @returns The record (a view into the ring unless `copy`), or `undefined` when none is ready.
   */
  readNext(): DataView | undefined {
    const start = this.#advance();
    if (start < 0) return undefined;
    const length = this.#length;
    if (this.#copy) return new DataView(this.#data.slice(start, start + length));
    return new DataView(this.#data, start, length);
  }

  /**
   * Finds the next submitted record, gives the previous one's space back to the kernel, and
   * returns the record's byte offset in the mapping (its length in `#length`), or -1.
   */
  #advance(commit = true): number {
    if (this.closed) return -1;
    for (;;) {
      if (commit) this.commit();
      if (this.#consumed >= this.#produced) {
        this.#produced = Number(Atomics.load(this.#producerPos, 0));
        if (this.#consumed >= this.#produced) return -1;
      }
      const offset = this.#consumed & this.#mask;
      // An acquiring load: the record's bytes are read only after its header says it is complete.
      const header = Atomics.load(this.#headers, offset / 4) >>> 0;
      if ((header & BUSY_BIT) !== 0) return -1; // reserved, not yet submitted
      const length = header & ~(BUSY_BIT | DISCARD_BIT);
      this.#consumed += (length + HEADER + 7) & ~7;
      if ((header & DISCARD_BIT) !== 0) continue;
      this.#records++;
      this.#length = length;
      return this.#page + offset + HEADER;
    }
  }

  /**
   * Reads the records that were ready when it was called (those submitted meanwhile wait for the
   * next call, so a busy producer cannot keep it, and the event loop, busy), synchronously and
   * without allocating anything per record: the callback
   * gets one `DataView` over the whole ring and the record's offset and length in it (decode in
   * place with generated views: `new EventView(view, offset)`). The fastest way to drain; the
   * bytes are valid during the call only, and `copy` does not apply.
   *
   * @param callback Called with the ring's view, the record's byte offset and its length.
   * @param limit The most records to read in this call.
   * @returns The number of records read.
   */
  drain(
    callback: (view: DataView, offset: number, length: number) => void,
    limit = Infinity,
  ): number {
    if (this.closed) return 0;
    // The same steps as #advance, with the state in locals: this loop is the hot path.
    const view = this.#view;
    const headers = this.#headers;
    const low = this.#consumerLow;
    const mask = this.#mask;
    const page = this.#page;
    let consumed = this.#consumed;
    const produced = Number(Atomics.load(this.#producerPos, 0));
    // The low half of the consumer position alone may be stored while the high half is unchanged.
    let highLimit = (Math.floor(consumed / 2 ** 32) + 1) * 2 ** 32;
    let count = 0;
    while (count < limit) {
      // Only what was there when the call began: a producer as fast as this loop must not keep
      // the call (and Deno's event loop) busy for ever.
      if (consumed >= produced) break;
      const offset = consumed & mask;
      const header = Atomics.load(headers, offset / 4) >>> 0;
      if ((header & BUSY_BIT) !== 0) break;
      const length = header & ~(BUSY_BIT | DISCARD_BIT);
      if ((header & DISCARD_BIT) === 0) {
        callback(view, page + offset + HEADER, length);
        count++;
      }
      consumed += (length + HEADER + 7) & ~7;
      // Space goes back to the kernel every 64 records (and at the end), not after each one.
      if ((count & 63) !== 0) continue;
      if (consumed < highLimit) Atomics.store(low, 0, consumed >>> 0);
      else {
        Atomics.store(this.#consumerPos, 0, BigInt(consumed));
        highLimit = (Math.floor(consumed / 2 ** 32) + 1) * 2 ** 32;
      }
    }
    this.#consumed = consumed;
    this.#produced = produced;
    this.#records += count;
    this.commit();
    return count;
  }

  /**
   * Reads the records that were ready when it was called, synchronously (`drain` is faster: it
   * allocates nothing per record).
   *
   * @param callback Called with each record (a view valid during the call unless `copy`).
   * @param limit The most records to read in this call.
   * @returns The number of records read.
   */
  consume(callback: (record: DataView) => void, limit = Infinity): number {
    const data = this.#data;
    return this.drain(
      this.#copy
        ? (_, offset, length) => callback(new DataView(data.slice(offset, offset + length)))
        : (_, offset, length) => callback(new DataView(data, offset, length)),
      limit,
    );
  }

  /**
   * Iterates over records until `close()`; each is valid until the next one unless `copy`.
   * A ready record is handed out in one pass over the ring, without a wait, an `async` call, a
   * promise or an allocation of its own: a record of up to 256 bytes is copied into one view the
   * reader reuses (so the view handed out is the same object, with new contents, for records of
   * the same length) and the result object is reused; a longer record is a view into the ring.
   * Space goes back to the kernel every 64 records and when the ring runs dry. Keep a record past
   * the next one with `copy: true`, or copy what it holds.
   *
   * @param options `preventClose: true` keeps the reader open when the loop ends early.
   * @returns The async iterator.
   */
  override values(options: { preventClose?: boolean } = {}): AsyncIterableIterator<DataView> {
    const done: IteratorReturnResult<undefined> = { done: true, value: undefined };
    // One result object, filled anew for each record: `for await` reads it before asking again.
    const result: { done: false; value: DataView } = { done: false, value: this.scratchView(0) };
    let taken = 0;
    let sliceStart = performance.now();
    const data = this.#data;
    const words = this.#headers;
    const bytes = this.#bytes;
    const page = this.#page;
    const mask = this.#mask;
    const scratchWords = this.scratchWords;
    const scratchBytes = this.scratchBytes;
    const copy = this.#copy;
    /** Hands out the next submitted record into `result`; false when none is ready. */
    const take = (): boolean => {
      if (this.closed) return false;
      for (;;) {
        let consumed = this.#consumed;
        if (consumed >= this.#produced) {
          this.#produced = Number(Atomics.load(this.#producerPos, 0));
          if (consumed >= this.#produced) return false;
        }
        const offset = consumed & mask;
        // An acquiring load: the record's bytes are read only after its header says it is done.
        const header = Atomics.load(words, offset >> 2) >>> 0;
        if ((header & BUSY_BIT) !== 0) return false; // reserved, not yet submitted
        const length = header & ~(BUSY_BIT | DISCARD_BIT);
        // The previous records' space goes back to the kernel every 64 records.
        if ((++taken & 63) === 0) this.#commitTo(consumed);
        consumed += (length + HEADER + 7) & ~7;
        this.#consumed = consumed;
        if ((header & DISCARD_BIT) !== 0) continue;
        this.#records++;
        const at = page + offset + HEADER;
        if (copy) result.value = new DataView(data.slice(at, at + length));
        else if (length > SMALL_RECORD) result.value = new DataView(data, at, length);
        else {
          // Records start 8-byte aligned in the ring: copy whole words, then the last bytes.
          const from = (offset + HEADER) >> 2;
          const whole = length >> 2;
          for (let w = 0; w < whole; w++) scratchWords[w] = words[from + w]!;
          for (let b = whole << 2; b < length; b++) scratchBytes[b] = bytes[at + b]!;
          result.value = this.scratchView(length);
        }
        return true;
      }
    };
    const wait = async (): Promise<IteratorResult<DataView>> => {
      for (;;) {
        if (performance.now() - sliceStart > SLICE_MS) {
          // Ready records resolve as microtasks, which run before timers and I/O: a loop over a
          // ring that never runs dry would starve the event loop. Every few milliseconds, yield.
          await yieldToEventLoop();
          sliceStart = performance.now();
        }
        if (take()) return result;
        if (this.closed) return done;
        await this.wait(this.pollIntervalMs);
        sliceStart = performance.now();
      }
    };
    const iterator: AsyncIterableIterator<DataView> = {
      // A plain result (not a promise) when a record is ready: `for await` awaits it all the same.
      next: () =>
        ((taken & 1023) !== 1023 && take() ? result : wait()) as Promise<IteratorResult<DataView>>,
      return: () => {
        if (!options.preventClose) this.close();
        return Promise.resolve(done);
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /** Gives the space up to `position` back to the kernel (a record still in use stays). */
  #commitTo(position: number): void {
    if (this.closed || position <= this.#committed) return;
    if (Math.floor(position / 2 ** 32) === Math.floor(this.#committed / 2 ** 32)) {
      Atomics.store(this.#consumerLow, 0, position >>> 0);
    } else {
      Atomics.store(this.#consumerPos, 0, BigInt(position));
    }
    this.#committed = position;
  }

  /**
   * Iterates over records in batches: one promise per batch instead of one per record, for high
   * rates. The views of a batch stay valid until the next batch is requested; `break` closes the
   * reader unless `preventClose`.
   *
   * @param options `max` records per batch (default 1024), `preventClose`.
   * @returns The async iterator of batches.
   */
  batches(
    options: { max?: number; preventClose?: boolean } = {},
  ): AsyncIterableIterator<DataView[]> {
    const max = options.max ?? 1024;
    const done: IteratorReturnResult<undefined> = { done: true, value: undefined };
    let sliceStart = performance.now();
    const iterator: AsyncIterableIterator<DataView[]> = {
      next: async () => {
        if (performance.now() - sliceStart > SLICE_MS) {
          // Let timers and I/O run between batches while records keep coming.
          await yieldToEventLoop();
          sliceStart = performance.now();
        }
        for (;;) {
          this.commit(); // the previous batch goes back to the kernel
          const batch: DataView[] = [];
          while (batch.length < max) {
            const start = this.#advance(false);
            if (start < 0) break;
            const length = this.#length;
            batch.push(
              this.#copy
                ? new DataView(this.#data.slice(start, start + length))
                : new DataView(this.#data, start, length),
            );
          }
          if (batch.length > 0) return { done: false, value: batch };
          if (this.closed) return done;
          await this.wait(this.pollIntervalMs);
          sliceStart = performance.now();
        }
      },
      return: () => {
        if (!options.preventClose) this.close();
        return Promise.resolve(done);
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /** Detaches every view into the ring, then unmaps it, so none can touch freed memory. */
  protected release(): void {
    this.#data.transfer(0);
    this.#consumerBuffer.transfer(0);
    munmap(this.#producer, this.#producerLength);
    munmap(this.#consumer, this.#page);
  }

  /**
   * Tells whether records are ready.
   *
   * @returns Whether the kernel wrote past what was read.
   */
  protected available(): boolean {
    return Number(Atomics.load(this.#producerPos, 0)) > this.#consumed;
  }

  /** Gives the space of the records read so far back to the kernel. */
  protected commit(): void {
    this.#commitTo(this.#consumed);
  }
}
