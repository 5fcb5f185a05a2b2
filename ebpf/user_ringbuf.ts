/**
 * {@linkcode UserRingBuffer}: writes records into a `BPF_MAP_TYPE_USER_RINGBUF` map (kernel
 * 6.1+, libbpf 1.1+), for a program to drain with `bpf_user_ringbuf_drain`: user space → kernel.
 *
 * @module
 */
import { errno, libbpf } from "./_ffi.ts";
import { BpfError, UnsupportedFeatureError } from "./errors.ts";
import type { BpfMap } from "./map.ts";

const ENOSPC = 28;

/**
 * Writes records into a user ring buffer map; a BPF program reads them with
 * `bpf_user_ringbuf_drain(&map, callback, ctx, 0)`, one `bpf_dynptr` per record.
 *
 * @example Send two commands to a program
 * ```ts ignore
 * import { BpfObject, UserRingBuffer } from "@triad/ebpf";
 *
 * using obj = BpfObject.open("prog.bpf.o");
 * await obj.load();
 * using commands = new UserRingBuffer(obj.map("commands"));
 * const record = new DataView(new ArrayBuffer(8));
 * for (const value of [1n, 2n]) {
 *   record.setBigUint64(0, value, true);
 *   commands.write(record);
 * }
 * ```
 */
export class UserRingBuffer implements Disposable {
  /** The map's name. */
  readonly name: string;
  /** The ring's size in bytes. */
  readonly size: number;
  #pointer: Deno.PointerObject | null;

  /**
   * Maps a user ring buffer for writing (one writer at a time, as libbpf requires).
   *
   * @param map The `user_ringbuf` map (from a loaded object).
   */
  constructor(map: BpfMap<unknown, unknown>) {
    if (map.type !== "user_ringbuf") {
      throw new BpfError(`Map ${map.name} is ${map.type}, not user_ringbuf`, {
        code: "bad_map_type",
      });
    }
    const create = libbpf().user_ring_buffer__new;
    if (create === null) {
      throw new UnsupportedFeatureError(
        "user ring buffers in this libbpf",
        "6.1",
        "the system libbpf has no user_ring_buffer__new (libbpf 1.1+)",
      );
    }
    const pointer = create(map.fd, null);
    if (pointer === null) {
      throw BpfError.fromErrno(`Map user ring buffer ${map.name}`, -errno());
    }
    this.#pointer = pointer;
    this.name = map.name;
    this.size = map.maxEntries;
  }

  /**
   * Writes one record, or throws when the ring has no room for it (the program has not drained
   * enough yet); use {@linkcode UserRingBuffer.tryWrite} to test instead.
   *
   * @param record The bytes (a record of at least 1 byte; 8 bytes of header go with each).
   */
  write(record: Uint8Array | DataView): void {
    if (!this.tryWrite(record)) {
      throw new BpfError(
        `User ring buffer ${this.name} is full (${this.size} bytes): the program has not ` +
          `drained it`,
        { code: "full", errno: ENOSPC },
      );
    }
  }

  /**
   * Writes one record if there is room.
   *
   * @param record The bytes.
   * @returns `false` when the ring is full (nothing written).
   */
  tryWrite(record: Uint8Array | DataView): boolean {
    const pointer = this.#open();
    const bytes = record instanceof Uint8Array
      ? record
      : new Uint8Array(record.buffer, record.byteOffset, record.byteLength);
    if (bytes.length === 0) {
      throw new BpfError(`User ring buffer ${this.name}: a record needs at least 1 byte`, {
        code: "bad_value",
      });
    }
    const lib = libbpf();
    const slot = lib.user_ring_buffer__reserve!(pointer, bytes.length);
    if (slot === null) {
      const code = errno();
      if (code === ENOSPC) return false;
      throw BpfError.fromErrno(
        `Reserve ${bytes.length} bytes in user ring buffer ${this.name}` +
          (code === 7 ? ` (a record may take at most ${this.size / 2 - 8} bytes)` : ""),
        -code,
      );
    }
    new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(slot, bytes.length)).set(bytes);
    lib.user_ring_buffer__submit!(pointer, slot);
    return true;
  }

  /** Unmaps the ring (records written stay for the program). Safe to call twice. */
  close(): void {
    if (this.#pointer === null) return;
    libbpf().user_ring_buffer__free!(this.#pointer);
    this.#pointer = null;
  }

  /** Same as {@linkcode UserRingBuffer.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #open(): Deno.PointerObject {
    if (this.#pointer === null) {
      throw new BpfError(`User ring buffer ${this.name} is closed`, { code: "closed" });
    }
    return this.#pointer;
  }
}
