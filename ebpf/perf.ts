/**
 * {@linkcode PerfBufferReader}: reads a `BPF_MAP_TYPE_PERF_EVENT_ARRAY` map (what
 * `bpf_perf_event_output` writes to). One perf ring per CPU is opened and mmapped; records are
 * read in TypeScript and waiting is an `epoll_wait` on a worker thread, so Deno's event loop
 * never blocks. The kernel counts lost records per CPU; they are surfaced as `lostPerCpu`.
 *
 * @module
 */
import { errno, libc, pageSize, possibleCpus } from "./_ffi.ts";
import { mmap, munmap } from "./_poller.ts";
import { RecordReader, SMALL_RECORD } from "./record_reader.ts";
import { Uint32 } from "./codec.ts";
import { BpfError } from "./errors.ts";
import type { BpfMap } from "./map.ts";

const PERF_TYPE_SOFTWARE = 1;
const PERF_COUNT_SW_BPF_OUTPUT = 10;
const PERF_SAMPLE_RAW = 1 << 10;
const PERF_FLAG_FD_CLOEXEC = 8;
const PERF_EVENT_IOC_ENABLE = 0x2400n;
const PERF_EVENT_IOC_DISABLE = 0x2401n;
const PERF_RECORD_LOST = 2;
const PERF_RECORD_SAMPLE = 9;
const SYS_PERF_EVENT_OPEN: Record<string, number> = { x86_64: 298, aarch64: 241 };
/** The longest one `consume()` call runs while records keep arriving. */
const CONSUME_MS = 20;

/** Options for {@linkcode PerfBufferReader}. */
export interface PerfBufferOptions {
  /** Data pages per CPU ring (a power of two). */
  pagesPerCpu?: number;
  /** Yield copies instead of views valid until the next record (reused by `for await`). */
  copy?: boolean;
  /** How long one wait for data lasts before checking again, in ms. */
  pollIntervalMs?: number;
  /** Wake the reader after this many records (1: every record, lowest latency). */
  wakeupEvents?: number;
}

interface CpuRing {
  cpu: number;
  fd: number;
  pointer: Deno.PointerObject;
  buffer: ArrayBuffer;
  /** `data_head` and `data_tail` of `struct perf_event_mmap_page`. */
  positions: BigUint64Array;
  tail: number;
  committed: number;
  /** `data_head` when last read (read again only once `tail` reaches it). */
  head: number;
  /** The whole mapping, to read record headers without allocating. */
  view: DataView;
  /** The data area as 32-bit words and as bytes, to copy records out of. */
  words: Int32Array;
  bytes: Uint8Array;
}

/** Returns the online CPUs (perf events cannot open on offline ones). */
function onlineCpus(): number[] {
  let text: string;
  try {
    text = Deno.readTextFileSync("/sys/devices/system/cpu/online").trim();
  } catch {
    return Array.from({ length: possibleCpus() }, (_, i) => i);
  }
  const cpus: number[] = [];
  for (const part of text.split(",")) {
    const [from, to] = part.split("-").map(Number);
    for (let cpu = from!; cpu <= (to ?? from!); cpu++) cpus.push(cpu);
  }
  return cpus;
}

/**
 * Reads records from a BPF perf event array, one ring per CPU, as an async iterable of
 * `DataView`s. Each record is a view valid until the next record is read (records that wrap
 * around the ring's end are copied; under `for await`, a record of up to 256 bytes is copied
 * into one view the reader reuses, so nothing is allocated per record); `copy: true` yields
 * copies. `lastCpu` tells which CPU the
 * last record came from; `lostPerCpu` counts what the kernel dropped because a ring was full.
 *
 * @example
 * ```ts ignore
 * import { BpfObject, PerfBufferReader } from "@triad/ebpf";
 *
 * using obj = BpfObject.open("prog.bpf.o");
 * await obj.load();
 * using link = obj.program("handle").attach();
 * await using reader = new PerfBufferReader(obj.map("perf_events"));
 * for await (const record of reader) console.log(reader.lastCpu, record.byteLength, reader.lost);
 * ```
 */
export class PerfBufferReader extends RecordReader {
  readonly #rings: CpuRing[] = [];
  readonly #page: number;
  readonly #dataSize: number;
  readonly #copy: boolean;
  readonly #lost: number[];
  readonly #slots: BpfMap<number, number>;
  #scratch = new Uint8Array(256);
  #pending: CpuRing | undefined;
  #cursor = 0;
  #records = 0;
  #lastCpu = -1;

  /**
   * Opens a perf ring on every online CPU and installs them in the map.
   *
   * @param map The `perf_event_array` map (from a loaded object).
   * @param options Ring size, copying, poll interval, wake-up batching.
   */
  constructor(map: BpfMap<unknown, unknown>, options: PerfBufferOptions = {}) {
    super(options.pollIntervalMs ?? 1000);
    if (map.type !== "perf_event_array") {
      throw new BpfError(`Map ${map.name} is ${map.type}, not perf_event_array`, {
        code: "bad_map_type",
      });
    }
    const pages = options.pagesPerCpu ?? 8;
    if (pages < 1 || (pages & (pages - 1)) !== 0) {
      throw new BpfError(`pagesPerCpu must be a power of two, got ${pages}`, {
        code: "bad_option",
      });
    }
    this.#page = pageSize();
    this.#dataSize = pages * this.#page;
    this.#copy = options.copy ?? false;
    this.#lost = new Array(possibleCpus()).fill(0);
    const slots = map.withCodecs(Uint32, Uint32);
    this.#slots = slots;
    try {
      for (const cpu of onlineCpus()) {
        if (cpu >= map.maxEntries) break;
        const fd = openPerfEvent(cpu, options.wakeupEvents ?? 1);
        let pointer: Deno.PointerObject;
        try {
          pointer = mmap(this.#page + this.#dataSize, true, fd, 0);
        } catch (error) {
          libc().close(fd);
          throw error;
        }
        const buffer = Deno.UnsafePointerView.getArrayBuffer(pointer, this.#page + this.#dataSize);
        const ring: CpuRing = {
          cpu,
          fd,
          pointer,
          buffer,
          positions: new BigUint64Array(buffer, 1024, 2),
          tail: 0,
          committed: 0,
          head: 0,
          view: new DataView(buffer),
          words: new Int32Array(buffer, this.#page, this.#dataSize / 4),
          bytes: new Uint8Array(buffer, this.#page, this.#dataSize),
        };
        ring.tail = ring.committed = Number(Atomics.load(ring.positions, 1));
        this.#rings.push(ring);
        slots.update(cpu, fd);
        if (libc().ioctl(fd, PERF_EVENT_IOC_ENABLE, 0n) < 0) {
          throw BpfError.fromErrno(`Enable perf event on CPU ${cpu}`, -errno());
        }
        this.watch(fd, cpu);
      }
    } catch (error) {
      this.abandon();
      this.release();
      throw error;
    }
  }

  /** Records read so far. */
  get records(): number {
    return this.#records;
  }

  /** The CPU the last record came from. */
  get lastCpu(): number {
    return this.#lastCpu;
  }

  /** Records the kernel dropped because a CPU's ring was full, per CPU. */
  get lostPerCpu(): readonly number[] {
    return this.#lost;
  }

  /** Records the kernel dropped, all CPUs together. */
  get lost(): number {
    return this.#lost.reduce((a, b) => a + b, 0);
  }

  /**
   * Reads the next record from any CPU if one is ready, without waiting.
   *
   * @returns The record, or `undefined` when none is ready.
   */
  readNext(): DataView | undefined {
    if (this.closed) return undefined;
    this.commit();
    for (let tried = 0; tried < this.#rings.length; tried++) {
      const ring = this.#rings[this.#cursor]!;
      const record = this.#readRing(ring);
      if (record !== undefined) return record;
      this.#commitRing(ring);
      this.#cursor = (this.#cursor + 1) % this.#rings.length;
    }
    return undefined;
  }

  /**
   * Reads the next record for `for await`: a sample of up to 256 bytes is copied into the
   * reader's reused scratch view (no allocation per record), anything else goes through
   * `readNext()`.
   *
   * @returns The record, or `undefined` when none is ready.
   */
  protected override nextRecord(): DataView | undefined {
    if (this.#copy || this.closed) return this.readNext();
    const rings = this.#rings;
    for (let tried = 0; tried < rings.length; tried++) {
      const ring = rings[this.#cursor]!;
      const record = this.#takeRing(ring);
      if (record !== undefined) return record;
      this.#commitRing(ring);
      this.#cursor = (this.#cursor + 1) % rings.length;
    }
    return undefined;
  }

  /** The next sample of `ring`, copied into the scratch view when it is small. */
  #takeRing(ring: CpuRing): DataView | undefined {
    if (ring.tail >= ring.head) {
      ring.head = Number(Atomics.load(ring.positions, 0));
      if (ring.tail >= ring.head) return undefined;
    }
    const size = this.#dataSize;
    const offset = ring.tail & (size - 1);
    // Records are 8-byte aligned and the ring's size a multiple of 8: the header never wraps.
    const type = ring.view.getUint32(this.#page + offset, true);
    const recordSize = ring.view.getUint16(this.#page + offset + 6, true);
    const lengthAt = (offset + 8) & (size - 1);
    const length = ring.view.getUint32(this.#page + lengthAt, true);
    if (type !== PERF_RECORD_SAMPLE || length > SMALL_RECORD || recordSize < 12 + length) {
      this.commit();
      return this.#readRing(ring);
    }
    // The payload follows its u32 length, 4-byte aligned; it may wrap around the ring's end.
    const mask = size / 4 - 1;
    const from = (offset + 12) >> 2;
    const whole = length >> 2;
    const words = ring.words;
    const scratchWords = this.scratchWords;
    for (let w = 0; w < whole; w++) scratchWords[w] = words[(from + w) & mask]!;
    for (let b = whole << 2; b < length; b++) {
      this.scratchBytes[b] = ring.bytes[(offset + 12 + b) & (size - 1)]!;
    }
    ring.tail += recordSize;
    this.#records++;
    this.#lastCpu = ring.cpu;
    this.#pending = ring;
    // The copied records' space goes back to the kernel a quarter of the ring at a time (and
    // whenever the ring runs dry or the reader waits).
    if (ring.tail - ring.committed >= size >> 2) this.#commitRing(ring);
    return this.scratchView(length);
  }

  /**
   * Reads every ready record synchronously.
   *
   * @param callback Called with each record (valid during the call unless `copy`).
   * @param limit The most records to read.
   * @returns The number read.
   */
  consume(callback: (record: DataView) => void, limit = Infinity): number {
    let count = 0;
    const start = performance.now();
    while (count < limit) {
      // A producer as fast as this loop must not keep it (and the event loop) busy for ever.
      if ((count & 255) === 255 && performance.now() - start > CONSUME_MS) break;
      const record = this.readNext();
      if (record === undefined) break;
      callback(record);
      count++;
    }
    this.commit();
    return count;
  }

  /** Takes the rings out of the map, disables, unmaps and closes them. */
  protected release(): void {
    for (const ring of this.#rings.splice(0)) {
      // The map holds its own reference to the event: take it out, so programs stop writing to
      // a ring nobody reads (ignored when the object, and so the map, is already closed).
      try {
        this.#slots.delete(ring.cpu);
      } catch {
        // map closed
      }
      libc().ioctl(ring.fd, PERF_EVENT_IOC_DISABLE, 0n);
      ring.buffer.transfer(0);
      munmap(ring.pointer, this.#page + this.#dataSize);
      libc().close(ring.fd);
    }
  }

  /**
   * Tells whether records are ready.
   *
   * @returns Whether any CPU's ring holds unread bytes.
   */
  protected available(): boolean {
    return this.#rings.some((ring) => Number(Atomics.load(ring.positions, 0)) > ring.tail);
  }

  #readRing(ring: CpuRing): DataView | undefined {
    const head = Number(Atomics.load(ring.positions, 0));
    while (ring.tail < head) {
      const offset = ring.tail % this.#dataSize;
      const header = this.#bytesAt(ring, offset, 8);
      const type = header.getUint32(0, true);
      const size = header.getUint16(6, true);
      if (size < 8) break; // never happens with a sane kernel; avoids looping forever
      const record = this.#bytesAt(ring, offset, size, true);
      ring.tail += size;
      if (type === PERF_RECORD_LOST) {
        this.#lost[ring.cpu] = (this.#lost[ring.cpu] ?? 0) + Number(record.getBigUint64(16, true));
        continue;
      }
      if (type !== PERF_RECORD_SAMPLE) continue;
      const length = record.getUint32(8, true);
      this.#pending = ring;
      this.#records++;
      this.#lastCpu = ring.cpu;
      const view = new DataView(record.buffer, record.byteOffset + 12, length);
      return this.#copy
        ? new DataView(view.buffer.slice(view.byteOffset, view.byteOffset + length))
        : view;
    }
    return undefined;
  }

  /** A view of `length` ring bytes at `offset`, copied when they wrap around the end. */
  #bytesAt(ring: CpuRing, offset: number, length: number, keep = false): DataView {
    const start = this.#page + offset;
    if (offset + length <= this.#dataSize) return new DataView(ring.buffer, start, length);
    const copy = keep
      ? new Uint8Array(length)
      : (this.#scratch.length >= length ? this.#scratch : (this.#scratch = new Uint8Array(length)));
    const first = this.#dataSize - offset;
    copy.set(new Uint8Array(ring.buffer, start, first), 0);
    copy.set(new Uint8Array(ring.buffer, this.#page, length - first), first);
    return new DataView(copy.buffer, copy.byteOffset, length);
  }

  /** Gives the space of the records read so far back to the kernel. */
  protected commit(): void {
    const ring = this.#pending;
    if (ring === undefined) return;
    this.#pending = undefined;
    this.#commitRing(ring);
  }

  #commitRing(ring: CpuRing): void {
    if (ring.tail === ring.committed || this.closed) return;
    Atomics.store(ring.positions, 1, BigInt(ring.tail));
    ring.committed = ring.tail;
  }
}

function openPerfEvent(cpu: number, wakeupEvents: number): number {
  const attr = new Uint8Array(128);
  const view = new DataView(attr.buffer);
  view.setUint32(0, PERF_TYPE_SOFTWARE, true);
  view.setUint32(4, attr.length, true);
  view.setBigUint64(8, BigInt(PERF_COUNT_SW_BPF_OUTPUT), true);
  view.setBigUint64(16, 1n, true); // sample_period
  view.setBigUint64(24, BigInt(PERF_SAMPLE_RAW), true);
  view.setUint32(48, wakeupEvents, true);
  const number = SYS_PERF_EVENT_OPEN[Deno.build.arch] ?? 298;
  const fd = Number(
    libc().syscall(BigInt(number), attr, -1n, BigInt(cpu), -1n, BigInt(PERF_FLAG_FD_CLOEXEC)),
  );
  if (fd < 0) throw BpfError.fromErrno(`Open a perf event on CPU ${cpu}`, -errno());
  return fd;
}
