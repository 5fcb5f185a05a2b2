/**
 * {@linkcode RecordReader}: what the ring buffer and perf buffer readers share — waiting for
 * records on a worker thread, iterating with turns for the event loop, and closing so that no
 * kernel memory is released while a wait still uses it.
 *
 * @module
 */
import { Poller, yieldToEventLoop } from "./_poller.ts";

/** How long a `for await` over a busy reader runs before it lets the event loop turn. */
const SLICE_MS = 5;
/**
 * Records up to this many bytes are copied by `for await` into one buffer the reader reuses (a
 * copy of a few dozen bytes costs less than allocating a `DataView`); longer ones are handed out
 * as views of their own.
 */
export const SMALL_RECORD = 256;

const EMPTY = new ArrayBuffer(0);

/**
 * The base of {@linkcode RingBufferReader} and {@linkcode PerfBufferReader}: an async iterable of
 * records (`DataView`s) whose waits run on a worker thread, so Deno's event loop never blocks.
 * Use one of those two; this type lets code take either.
 *
 * @example
 * ```ts ignore
 * import type { RecordReader } from "@triad/ebpf";
 *
 * // Counts records for `ms` milliseconds, whichever kind of buffer they come from.
 * async function count(reader: RecordReader, ms: number): Promise<number> {
 *   let n = 0;
 *   const until = Date.now() + ms;
 *   while (Date.now() < until && await reader.wait(until - Date.now())) {
 *     while (reader.readNext() !== undefined) n++;
 *   }
 *   return n;
 * }
 * ```
 */
export abstract class RecordReader implements AsyncIterable<DataView>, Disposable, AsyncDisposable {
  /** Made by the first `watch()`, so a constructor that throws before has nothing to close. */
  #poller: Poller | undefined;
  #closed = false;
  /** Where `for await` copies small records; detached on close, like the views into the ring. */
  readonly #scratch = new ArrayBuffer(SMALL_RECORD);
  /** The scratch buffer as 32-bit words, to copy records into. */
  protected readonly scratchWords: Int32Array = new Int32Array(this.#scratch);
  /** The scratch buffer as bytes, for a record's last bytes. */
  protected readonly scratchBytes: Uint8Array = new Uint8Array(this.#scratch);
  /** One view of the scratch buffer per record length, made once and handed out again. */
  readonly #scratchViews: (DataView | undefined)[] = [];

  /**
   * Sets how long one wait lasts.
   *
   * @param pollIntervalMs How long one wait for data lasts before checking again, in ms.
   */
  protected constructor(readonly pollIntervalMs: number) {}

  /**
   * Reads the next record if one is ready, without waiting.
   *
   * @returns The record, or `undefined` when none is ready.
   */
  abstract readNext(): DataView | undefined;

  /** Gives the space of the records read so far back to the kernel. */
  protected abstract commit(): void;

  /**
   * Reads the next record for `for await`: like `readNext()`, but a small record may be copied
   * into the reader's reused scratch view (see {@linkcode RecordReader.scratchView}).
   *
   * @returns The record, or `undefined` when none is ready.
   */
  protected nextRecord(): DataView | undefined {
    return this.readNext();
  }

  /**
   * The reused view of the first `length` bytes of the scratch buffer, where `for await` copies
   * small records (made once per length; valid until the next record, detached on close).
   *
   * @param length The record's length, at most {@linkcode SMALL_RECORD}.
   * @returns The view.
   */
  protected scratchView(length: number): DataView {
    return this.#scratchViews[length] ??= new DataView(this.#scratch, 0, length);
  }

  /**
   * Tells whether records are ready.
   *
   * @returns Whether any are.
   */
  protected abstract available(): boolean;

  /** Unmaps and closes what the reader holds; runs once no wait uses it any more. */
  protected abstract release(): void;

  /**
   * Wakes waits when `fd` becomes readable.
   *
   * @param fd The ring buffer map or perf event.
   * @param tag Told apart in the wait (the CPU of a perf ring).
   */
  protected watch(fd: number, tag: number): void {
    (this.#poller ??= new Poller()).add(fd, tag);
  }

  /** Closes the wait machinery of a reader whose construction failed. */
  protected abandon(): void {
    this.#closed = true;
    this.#poller?.close();
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Waits until records are ready (on a worker thread), or the timeout passes.
   *
   * @param timeoutMs The longest wait, in ms.
   * @returns Whether records are ready.
   */
  async wait(timeoutMs: number): Promise<boolean> {
    this.commit();
    if (this.#closed) return false;
    if (this.available()) return true;
    if (this.#poller === undefined) return false;
    await this.#poller.wait(timeoutMs);
    return !this.#closed && this.available();
  }

  /**
   * Iterates over records until `close()`. Leaving a `for await` loop early (`break`) closes the
   * reader, as with streams; use `values({ preventClose: true })` to keep it open.
   *
   * @returns The async iterator.
   */
  [Symbol.asyncIterator](): AsyncIterator<DataView> {
    return this.values();
  }

  /**
   * Iterates over records until `close()`; each is valid until the next one unless `copy`. A
   * record of up to 256 bytes may be handed out in one view the reader reuses (the same object,
   * with new contents, for the next record of the same length), and the iterator result object
   * is reused too: read each record before asking for the next, one loop at a time.
   *
   * @param options `preventClose: true` keeps the reader open when the loop ends early.
   * @returns The async iterator.
   */
  values(options: { preventClose?: boolean } = {}): AsyncIterableIterator<DataView> {
    const done: IteratorReturnResult<undefined> = { done: true, value: undefined };
    // One result object, filled anew for each record: `for await` reads it before asking again.
    const result: { done: false; value: DataView } = { done: false, value: new DataView(EMPTY) };
    const next = async (): Promise<IteratorResult<DataView>> => {
      for (;;) {
        const record = this.nextRecord();
        if (record !== undefined) {
          result.value = record;
          return result;
        }
        if (this.#closed) return done;
        await this.wait(this.pollIntervalMs);
        slice.start = performance.now();
      }
    };
    // Ready records resolve as microtasks, which run before timers and I/O: a loop over a
    // reader that never runs dry would starve the event loop. Every few milliseconds, yield.
    const slice = { start: performance.now(), count: 0 };
    const yielded = async (): Promise<IteratorResult<DataView>> => {
      await yieldToEventLoop();
      slice.start = performance.now();
      return next();
    };
    const iterator: AsyncIterableIterator<DataView> = {
      next: () => {
        if ((++slice.count & 255) === 0 && performance.now() - slice.start > SLICE_MS) {
          return yielded();
        }
        // Fast path: a ready record is handed out as a plain result, without a promise of its
        // own (`for await` awaits it all the same).
        const record = this.#closed ? undefined : this.nextRecord();
        if (record === undefined) return next();
        result.value = record;
        return result as unknown as Promise<IteratorResult<DataView>>;
      },
      return: () => {
        if (!options.preventClose) this.close();
        return Promise.resolve(done);
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /**
   * Stops the reader: ends iteration, wakes a pending wait, and releases the buffers once no wait
   * uses them (views handed out become detached, never dangling). Safe to call twice.
   */
  close(): void {
    if (this.#closed) return;
    this.commit();
    this.#closed = true;
    const waiting = this.#poller?.waiting;
    this.#poller?.close();
    const release = () => {
      this.release();
      this.#scratch.transfer(0); // records copied for `for await` are detached too
    };
    if (waiting === undefined) release();
    else waiting.finally(release);
  }

  /** Same as {@linkcode RecordReader.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Closes and waits until a pending wait on the worker thread has ended. */
  async [Symbol.asyncDispose](): Promise<void> {
    const waiting = this.#poller?.waiting;
    this.close();
    await waiting?.catch(() => {});
  }
}
