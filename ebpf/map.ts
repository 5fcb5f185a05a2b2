/**
 * {@linkcode BpfMap}: a BPF map with typed keys and values through codecs — lookup, update with
 * flags, delete, iteration, batch operations, per-CPU values, pinning, and standalone maps.
 *
 * @module
 */
import { libbpf, libc, possibleCpus, toCString } from "./_ffi.ts";
import { Bytes, type Codec } from "./codec.ts";
import { BpfError } from "./errors.ts";
import { isPerCpu, MAP_TYPES, type MapType, mapTypeName } from "./types.ts";

/** How `update` treats an existing or missing key. */
export type UpdateFlag = "any" | "noexist" | "exist" | "lock";

const UPDATE_FLAGS: Record<UpdateFlag, bigint> = { any: 0n, noexist: 1n, exist: 2n, lock: 4n };

/** What a kernel without batch operations for a map (type) answers: EINVAL, ENOTSUPP, EOPNOTSUPP. */
const BATCH_UNSUPPORTED = new Set([-22, -524, -95]);

/** The file descriptor behind a map and who closes it. */
interface MapHandle {
  fd: number;
  /** Closed by `BpfMap.close()` (standalone and pinned maps); object maps belong to the object. */
  owned: boolean;
  closed: boolean;
  /** Set when the owning object closes. */
  owner?: string;
}

/** The shape of a map. */
export interface MapInfo {
  /** The map name (at most 15 bytes in the kernel). */
  name: string;
  /** The map type. */
  type: MapType | `map_type_${number}`;
  /** Key size in bytes. */
  keySize: number;
  /** Value size in bytes (per CPU for per-CPU maps). */
  valueSize: number;
  /** Maximum number of entries (ring buffer: size in bytes). */
  maxEntries: number;
  /** Map flags (`BPF_F_*`). */
  flags: number;
}

/** Options for {@linkcode BpfMap.create}. */
export interface CreateMapOptions<K, V> {
  /** The map type, such as `hash`, `array`, `percpu_hash`, `ringbuf`. */
  type: MapType;
  /** The map name (at most 15 bytes). */
  name?: string;
  /** The key codec (`Uint32`, `structCodec(...)`); or give `keySize` for raw bytes. */
  key?: Codec<K>;
  /** Key size in bytes when no key codec is given. */
  keySize?: number;
  /** The value codec; or give `valueSize` for raw bytes. */
  value?: Codec<V>;
  /** Value size in bytes when no value codec is given. */
  valueSize?: number;
  /** Maximum number of entries (ring buffer: bytes, a power of two multiple of the page size). */
  maxEntries: number;
  /** Map flags (`BPF_F_NO_PREALLOC` = 1, ...). */
  flags?: number;
  /**
   * For `array_of_maps` and `hash_of_maps`: a map of the shape every inner map must have (the
   * kernel checks type, key and value size, max entries of inserted maps against it).
   */
  innerMap?: BpfMap<unknown, unknown>;
}

/** Options for {@linkcode BpfMap.fromPin}. */
export interface MapCodecs<K, V> {
  /** The key codec. */
  key?: Codec<K>;
  /** The value codec. */
  value?: Codec<V>;
}

/** @internal */
export const mapInternal = Symbol("mapInternal");

/**
 * A BPF map. Keys and values go through codecs (raw `Uint8Array` bytes by default; maps of a
 * loaded object get codecs from BTF). Object maps are closed by their object; standalone and
 * pinned maps by `close()` or `using`.
 *
 * @example A standalone hash map
 * ```ts ignore
 * import { BpfMap, Uint32, Uint64 } from "@triad/ebpf";
 *
 * using counts = BpfMap.create({ type: "hash", key: Uint32, value: Uint64, maxEntries: 64 });
 * counts.update(1, 10n);
 * counts.update(1, 11n, "exist");
 * console.log(counts.lookup(1), [...counts.entries()]);
 * ```
 */
export class BpfMap<K = Uint8Array, V = Uint8Array> implements Disposable {
  /** The map name. */
  readonly name: string;
  /** The map type. */
  readonly type: MapType | `map_type_${number}`;
  /** Key size in bytes. */
  readonly keySize: number;
  /** Value size in bytes (one CPU's value for per-CPU maps). */
  readonly valueSize: number;
  /** Maximum number of entries (ring buffer: its size in bytes). */
  readonly maxEntries: number;
  /** Map flags. */
  readonly flags: number;
  /** The key codec. */
  readonly keyCodec: Codec<K>;
  /** The value codec. */
  readonly valueCodec: Codec<V>;
  readonly #handle: MapHandle;
  #keyBuffer: Uint8Array<ArrayBuffer>;
  #valueBuffer: Uint8Array<ArrayBuffer>;

  /** @internal Use {@linkcode BpfMap.create}, {@linkcode BpfMap.fromPin} or `BpfObject.map`. */
  constructor(token: unknown, info: MapInfo, handle: unknown, key: Codec<K>, value: Codec<V>) {
    if (token !== mapInternal) throw new TypeError("Use BpfMap.create() or BpfObject.map()");
    this.name = info.name;
    this.type = info.type;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.flags = info.flags;
    this.#handle = handle as MapHandle;
    if (info.keySize !== 0 && key.size !== info.keySize) {
      throw new BpfError(
        `Map ${info.name}: key codec is ${key.size} bytes but the map's keys are ${info.keySize}`,
        { code: "bad_codec" },
      );
    }
    if (info.valueSize !== 0 && value.size !== info.valueSize) {
      throw new BpfError(
        `Map ${info.name}: value codec is ${value.size} bytes but the map's values are ` +
          `${info.valueSize}`,
        { code: "bad_codec" },
      );
    }
    this.keyCodec = key;
    this.valueCodec = value;
    this.#keyBuffer = new Uint8Array(Math.max(info.keySize, 8));
    this.#valueBuffer = new Uint8Array(this.#valueStride() * (this.perCpu ? possibleCpus() : 1));
  }

  /**
   * Creates a standalone map (not part of an object).
   *
   * @param options Type, key/value codecs or sizes, max entries, flags.
   * @returns The map; close it (or `using`) to release it.
   */
  static create<K = Uint8Array, V = Uint8Array>(options: CreateMapOptions<K, V>): BpfMap<K, V> {
    const type = MAP_TYPES.indexOf(options.type);
    if (type <= 0) throw new BpfError(`Unknown map type ${options.type}`, { code: "bad_map_type" });
    const keySize = options.key?.size ?? options.keySize ?? 0;
    const valueSize = options.value?.size ?? options.valueSize ??
      (options.innerMap !== undefined ? 4 : 0);
    const name = options.name ?? "";
    const opts = new Uint8Array(48);
    const view = new DataView(opts.buffer);
    view.setBigUint64(0, 48n, true);
    view.setUint32(28, options.flags ?? 0, true);
    const ofMaps = options.type === "array_of_maps" || options.type === "hash_of_maps";
    if (ofMaps !== (options.innerMap !== undefined)) {
      throw new BpfError(
        ofMaps
          ? `Create ${options.type} map ${name || "(unnamed)"}: innerMap is required (a map of ` +
            `the inner maps' shape)`
          : `Create ${options.type} map ${name || "(unnamed)"}: innerMap is only for ` +
            `array_of_maps and hash_of_maps`,
        { code: "bad_map_type" },
      );
    }
    if (options.innerMap) view.setUint32(24, options.innerMap.fd, true);
    const fd = libbpf().bpf_map_create(
      type,
      name === "" ? null : toCString(name.slice(0, 15)),
      keySize,
      valueSize,
      options.maxEntries,
      opts,
    );
    if (fd < 0) {
      throw BpfError.fromErrno(
        `Create ${options.type} map ${name || "(unnamed)"} (key ${keySize} B, value ${valueSize} ` +
          `B, ${options.maxEntries} entries)`,
        fd,
      );
    }
    const info: MapInfo = {
      name,
      type: options.type,
      keySize,
      valueSize,
      maxEntries: options.maxEntries,
      flags: options.flags ?? 0,
    };
    return new BpfMap(
      mapInternal,
      info,
      { fd, owned: true, closed: false },
      options.key ?? (Bytes(keySize) as Codec<K>),
      options.value ?? (Bytes(valueSize) as Codec<V>),
    );
  }

  /**
   * Opens a map pinned in bpffs.
   *
   * @param path The pin path, such as `/sys/fs/bpf/counts`.
   * @param codecs Key and value codecs (raw bytes by default).
   * @returns The map; closing it leaves the pin.
   */
  static fromPin<K = Uint8Array, V = Uint8Array>(
    path: string,
    codecs: MapCodecs<K, V> = {},
  ): BpfMap<K, V> {
    const fd = libbpf().bpf_obj_get(toCString(path));
    if (fd < 0) throw BpfError.fromErrno(`Open pinned map ${path}`, fd);
    return BpfMap.#fromFd(fd, path, codecs);
  }

  /** Wraps a map fd this map will own (closed here when its info cannot be read). */
  static #fromFd<K, V>(fd: number, where: string, codecs: MapCodecs<K, V>): BpfMap<K, V> {
    let info: MapInfo;
    try {
      info = mapInfoByFd(fd, where);
    } catch (error) {
      libc().close(fd);
      throw error;
    }
    return new BpfMap(
      mapInternal,
      info,
      { fd, owned: true, closed: false },
      codecs.key ?? (Bytes(info.keySize) as Codec<K>),
      codecs.value ?? (Bytes(info.valueSize) as Codec<V>),
    );
  }

  /**
   * Returns a view of this map with other codecs (sharing the file descriptor).
   *
   * @param key The key codec.
   * @param value The value codec.
   * @returns The typed map.
   */
  withCodecs<K2, V2>(key: Codec<K2>, value: Codec<V2>): BpfMap<K2, V2> {
    return new BpfMap(mapInternal, this.#info(), this.#handle, key, value);
  }

  /** The map's file descriptor. */
  get fd(): number {
    return this.#open().fd;
  }

  /** The kernel's id of this map (as `bpftool map list` shows). */
  get id(): number {
    const info = new Uint8Array(96);
    const length = new Uint32Array([info.length]);
    const rc = libbpf().bpf_obj_get_info_by_fd(this.fd, info, new Uint8Array(length.buffer));
    if (rc < 0) throw BpfError.fromErrno(`Get info of map ${this.name}`, rc);
    return new DataView(info.buffer).getUint32(4, true);
  }

  /** Whether values are per CPU (use `lookupPerCpu`/`updatePerCpu`). */
  get perCpu(): boolean {
    return isPerCpu(this.type);
  }

  /**
   * Looks a key up.
   *
   * @param key The key.
   * @returns The value, or `undefined` when the key is absent.
   */
  lookup(key: K): V | undefined {
    this.#notPerCpu("lookup");
    const found = this.#lookupRaw(key);
    return found ? this.valueCodec.decode(this.#valueView(), 0) : undefined;
  }

  /**
   * Looks a key up in a per-CPU map.
   *
   * @param key The key.
   * @returns One value per possible CPU, or `undefined` when the key is absent.
   */
  lookupPerCpu(key: K): V[] | undefined {
    this.#perCpuOnly("lookupPerCpu");
    if (!this.#lookupRaw(key)) return undefined;
    const view = this.#valueView();
    const stride = this.#valueStride();
    return Array.from(
      { length: possibleCpus() },
      (_, cpu) => this.valueCodec.decode(view, cpu * stride),
    );
  }

  /**
   * Writes a key's value.
   *
   * @param key The key.
   * @param value The value.
   * @param flag `any` (default), `noexist` (fail if present), `exist` (fail if absent), `lock`.
   */
  update(key: K, value: V, flag: UpdateFlag = "any"): void {
    this.#notPerCpu("update");
    this.valueCodec.encode(value, this.#valueView(), 0);
    this.#updateRaw(key, flag);
  }

  /**
   * Writes a key's per-CPU values.
   *
   * @param key The key.
   * @param values One value per possible CPU, or one value written to every CPU.
   * @param flag As for `update`.
   */
  updatePerCpu(key: K, values: V[] | V, flag: UpdateFlag = "any"): void {
    this.#perCpuOnly("updatePerCpu");
    const cpus = possibleCpus();
    const view = this.#valueView();
    const stride = this.#valueStride();
    for (let cpu = 0; cpu < cpus; cpu++) {
      const value = Array.isArray(values) ? values[cpu] : values;
      if (value === undefined) {
        throw new BpfError(
          `Map ${this.name}: ${(values as V[]).length} per-CPU values given, ${cpus} CPUs are ` +
            `possible`,
          { code: "bad_value" },
        );
      }
      this.valueCodec.encode(value, view, cpu * stride);
    }
    this.#updateRaw(key, flag);
  }

  /**
   * Deletes a key.
   *
   * @param key The key.
   * @returns `true` when it was present.
   */
  delete(key: K): boolean {
    this.#encodeKey(key);
    const rc = libbpf().bpf_map_delete_elem(this.fd, this.#keyBuffer);
    if (rc === 0) return true;
    if (rc === -2) return false;
    throw BpfError.fromErrno(`Delete from map ${this.name}`, rc);
  }

  /**
   * Iterates over the keys (`bpf_map_get_next_key`). Yields at most `maxEntries` keys, so
   * concurrent deletes cannot make it loop forever.
   */
  *keys(): IterableIterator<K> {
    const fd = this.fd;
    const current = new Uint8Array(this.keySize);
    const next = new Uint8Array(this.keySize);
    const view = new DataView(next.buffer);
    let first = true;
    for (let count = 0; count < this.maxEntries; count++) {
      const rc = libbpf().bpf_map_get_next_key(fd, first ? null : current, next);
      if (rc === -2) return;
      if (rc < 0) throw BpfError.fromErrno(`Iterate map ${this.name}`, rc);
      first = false;
      current.set(next);
      yield this.keyCodec.decode(view, 0);
    }
  }

  /** Iterates over `[key, value]` pairs (keys deleted meanwhile are skipped). */
  *entries(): IterableIterator<[K, V]> {
    for (const key of this.keys()) {
      const value = this.lookup(key);
      if (value !== undefined) yield [key, value];
    }
  }

  /** Same as {@linkcode BpfMap.entries}. */
  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  /**
   * Reads the whole map in batches (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6+), far fewer system calls
   * than `entries()`. Per-CPU maps yield arrays of values.
   *
   * @param batchSize Entries per system call.
   * @param options `deleting: true` removes what it reads (`BPF_MAP_LOOKUP_AND_DELETE_BATCH`).
   */
  *entriesBatch(
    batchSize = 256,
    options: { deleting?: boolean } = {},
  ): IterableIterator<[K, V | V[]]> {
    const fd = this.fd;
    const cpus = this.perCpu ? possibleCpus() : 1;
    const stride = this.#valueStride() * cpus;
    const keys = new Uint8Array(this.keySize * batchSize);
    const values = new Uint8Array(stride * batchSize);
    const keyView = new DataView(keys.buffer);
    const valueView = new DataView(values.buffer);
    const tokenIn = new Uint8Array(Math.max(this.keySize, 8));
    const tokenOut = new Uint8Array(Math.max(this.keySize, 8));
    const count = new Uint32Array(1);
    const opts = new Uint8Array(24);
    new DataView(opts.buffer).setBigUint64(0, 24n, true);
    const call = options.deleting
      ? libbpf().bpf_map_lookup_and_delete_batch
      : libbpf().bpf_map_lookup_batch;
    let first = true;
    for (let round = 0; round <= this.maxEntries / batchSize + 1; round++) {
      count[0] = batchSize;
      const rc = call(
        fd,
        first ? null : tokenIn,
        tokenOut,
        keys,
        values,
        new Uint8Array(count.buffer),
        opts,
      );
      if (first && BATCH_UNSUPPORTED.has(rc)) {
        // No batch operations for this map type or kernel (before 5.6): one key at a time.
        yield* this.#entriesOneByOne(options.deleting ?? false);
        return;
      }
      const failed = rc < 0 && rc !== -2;
      if (failed) throw BpfError.fromErrno(`Batch lookup in map ${this.name}`, rc);
      for (let i = 0; i < count[0]!; i++) {
        const key = this.keyCodec.decode(keyView, i * this.keySize);
        if (this.perCpu) {
          const perCpu = [];
          for (let cpu = 0; cpu < cpus; cpu++) {
            perCpu.push(this.valueCodec.decode(valueView, i * stride + cpu * this.#valueStride()));
          }
          yield [key, perCpu];
        } else yield [key, this.valueCodec.decode(valueView, i * stride)];
      }
      if (rc === -2) return;
      tokenIn.set(tokenOut);
      first = false;
    }
  }

  *#entriesOneByOne(deleting: boolean): IterableIterator<[K, V | V[]]> {
    for (const key of [...this.keys()]) {
      const value = this.perCpu ? this.lookupPerCpu(key) : this.lookup(key);
      if (value === undefined) continue;
      if (deleting) this.delete(key);
      yield [key, value];
    }
  }

  /**
   * Writes many entries in one system call (`BPF_MAP_UPDATE_BATCH`, Linux 5.6+).
   *
   * @param entries The `[key, value]` pairs.
   * @param flag As for `update`.
   */
  updateBatch(entries: readonly (readonly [K, V])[], flag: UpdateFlag = "any"): void {
    this.#notPerCpu("updateBatch");
    const keys = new Uint8Array(this.keySize * entries.length);
    const values = new Uint8Array(this.#valueStride() * entries.length);
    const keyView = new DataView(keys.buffer);
    const valueView = new DataView(values.buffer);
    entries.forEach(([key, value], i) => {
      this.keyCodec.encode(key, keyView, i * this.keySize);
      this.valueCodec.encode(value, valueView, i * this.#valueStride());
    });
    const count = new Uint32Array([entries.length]);
    const opts = new Uint8Array(24);
    const view = new DataView(opts.buffer);
    view.setBigUint64(0, 24n, true);
    view.setBigUint64(8, UPDATE_FLAGS[flag], true);
    const rc = libbpf().bpf_map_update_batch(
      this.fd,
      keys,
      values,
      new Uint8Array(count.buffer),
      opts,
    );
    if (BATCH_UNSUPPORTED.has(rc)) {
      for (const [key, value] of entries) this.update(key, value, flag);
      return;
    }
    if (rc < 0) {
      throw BpfError.fromErrno(
        `Batch update of map ${this.name} (${count[0]} of ${entries.length} written)`,
        rc,
      );
    }
  }

  /**
   * Deletes many keys in one system call (`BPF_MAP_DELETE_BATCH`, Linux 5.6+).
   *
   * @param keys The keys (all must exist).
   */
  deleteBatch(keys: readonly K[]): void {
    const buffer = new Uint8Array(this.keySize * keys.length);
    const view = new DataView(buffer.buffer);
    keys.forEach((key, i) => this.keyCodec.encode(key, view, i * this.keySize));
    const count = new Uint32Array([keys.length]);
    const opts = new Uint8Array(24);
    new DataView(opts.buffer).setBigUint64(0, 24n, true);
    const rc = libbpf().bpf_map_delete_batch(this.fd, buffer, new Uint8Array(count.buffer), opts);
    if (BATCH_UNSUPPORTED.has(rc)) {
      for (const key of keys) {
        if (!this.delete(key)) throw BpfError.fromErrno(`Delete from map ${this.name}`, -2);
      }
      return;
    }
    if (rc < 0) {
      throw BpfError.fromErrno(
        `Batch delete from map ${this.name} (${count[0]} of ${keys.length} deleted)`,
        rc,
      );
    }
  }

  /**
   * Puts a map into a map of maps (`array_of_maps`, `hash_of_maps`): programs looking the key up
   * from then on use `inner`. The kernel checks that `inner` has the inner maps' shape; the slot
   * keeps `inner` alive after it is closed here.
   *
   * @example Swap the inner map a program counts into
   * ```ts ignore
   * import { BpfMap, Uint32, Uint64 } from "@triad/ebpf";
   *
   * using template = BpfMap.create({ type: "array", key: Uint32, value: Uint64, maxEntries: 1 });
   * using outer = BpfMap.create({
   *   type: "array_of_maps", key: Uint32, maxEntries: 2, innerMap: template,
   * });
   * using next = BpfMap.create({ type: "array", key: Uint32, value: Uint64, maxEntries: 1 });
   * outer.setInner(0, next);
   * console.log(outer.innerId(0) === next.id); // true
   * ```
   *
   * @param key The slot.
   * @param inner The map to put there.
   * @param flag As for `update`.
   */
  setInner(key: K, inner: BpfMap<unknown, unknown>, flag: UpdateFlag = "any"): void {
    this.#ofMapsOnly("setInner");
    new DataView(this.#valueBuffer.buffer).setUint32(0, inner.fd, true);
    this.#updateRaw(
      key,
      flag,
      (rc) =>
        `Put map ${inner.name || "(unnamed)"} (${inner.type}, key ${inner.keySize} B, value ` +
        `${inner.valueSize} B, ${inner.maxEntries} entries) into ${this.type} map ${this.name}` +
        (rc === -22 ? " (does its shape match the inner map template?)" : ""),
    );
  }

  /**
   * Reads which map a slot of a map of maps holds.
   *
   * @param key The slot.
   * @returns The kernel id of the inner map (as `BpfMap.id` and `bpftool map list` show), or
   *   `undefined` when the slot is empty.
   */
  innerId(key: K): number | undefined {
    this.#ofMapsOnly("innerId");
    if (!this.#lookupRaw(key)) return undefined;
    return new DataView(this.#valueBuffer.buffer).getUint32(0, true);
  }

  /**
   * Opens the map a slot of a map of maps holds, with the given codecs (raw bytes by default).
   *
   * @param key The slot.
   * @param codecs Key and value codecs of the inner map.
   * @returns The inner map (close it; the slot keeps the map alive), or `undefined` when empty.
   */
  inner<K2 = Uint8Array, V2 = Uint8Array>(
    key: K,
    codecs: MapCodecs<K2, V2> = {},
  ): BpfMap<K2, V2> | undefined {
    const id = this.innerId(key);
    if (id === undefined) return undefined;
    return BpfMap.fromId(id, codecs);
  }

  /**
   * Opens a map by its kernel id (as `bpftool map list` shows it).
   *
   * @param id The map id.
   * @param codecs Key and value codecs (raw bytes by default).
   * @returns The map; close it (or `using`).
   */
  static fromId<K = Uint8Array, V = Uint8Array>(
    id: number,
    codecs: MapCodecs<K, V> = {},
  ): BpfMap<K, V> {
    const fd = libbpf().bpf_map_get_fd_by_id(id);
    if (fd < 0) throw BpfError.fromErrno(`Open map id ${id}`, fd);
    return BpfMap.#fromFd(fd, `id ${id}`, codecs);
  }

  /**
   * Pins the map to bpffs so it outlives this process.
   *
   * @param path The pin path, such as `/sys/fs/bpf/counts`.
   */
  pin(path: string): void {
    const rc = libbpf().bpf_obj_pin(this.fd, toCString(path));
    if (rc < 0) throw BpfError.fromErrno(`Pin map ${this.name} at ${path}`, rc);
  }

  /**
   * Removes a pin (the map lives on while open handles remain).
   *
   * @param path The pin path.
   */
  static unpin(path: string): void {
    Deno.removeSync(path);
  }

  /** Releases a standalone or pinned map's descriptor; object maps close with their object. */
  close(): void {
    const handle = this.#handle;
    if (!handle.owned || handle.closed) return;
    handle.closed = true;
    libc().close(handle.fd);
  }

  /** Same as {@linkcode BpfMap.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #info(): MapInfo {
    return {
      name: this.name,
      type: this.type,
      keySize: this.keySize,
      valueSize: this.valueSize,
      maxEntries: this.maxEntries,
      flags: this.flags,
    };
  }

  #open(): MapHandle {
    const handle = this.#handle;
    if (handle.closed || handle.fd < 0) {
      throw new BpfError(
        handle.owner === undefined
          ? `Map ${this.name} is closed`
          : `Map ${this.name} is closed (its object ${handle.owner} was closed or never loaded)`,
        { code: "closed" },
      );
    }
    return handle;
  }

  #valueStride(): number {
    return this.perCpu ? Math.ceil(this.valueSize / 8) * 8 : this.valueSize;
  }

  #valueView(): DataView {
    return new DataView(this.#valueBuffer.buffer);
  }

  #encodeKey(key: K): void {
    this.keyCodec.encode(key, new DataView(this.#keyBuffer.buffer), 0);
  }

  #lookupRaw(key: K): boolean {
    this.#encodeKey(key);
    const rc = libbpf().bpf_map_lookup_elem(this.fd, this.#keyBuffer, this.#valueBuffer);
    if (rc === 0) return true;
    if (rc === -2) return false;
    throw BpfError.fromErrno(`Lookup in map ${this.name}`, rc);
  }

  /** Writes the value buffer at `key`; `what` names a failure (by default, an update). */
  #updateRaw(
    key: K,
    flag: UpdateFlag,
    what = (_rc: number) => `Update of map ${this.name} (flag ${flag})`,
  ): void {
    this.#encodeKey(key);
    const rc = libbpf().bpf_map_update_elem(
      this.fd,
      this.#keyBuffer,
      this.#valueBuffer,
      UPDATE_FLAGS[flag],
    );
    if (rc < 0) throw BpfError.fromErrno(what(rc), rc);
  }

  #ofMapsOnly(method: string): void {
    if (this.type !== "array_of_maps" && this.type !== "hash_of_maps") {
      throw new BpfError(
        `Map ${this.name} is ${this.type}: ${method} needs an array_of_maps or hash_of_maps map`,
        { code: "bad_map_type" },
      );
    }
  }

  #notPerCpu(method: string): void {
    if (this.perCpu) {
      throw new BpfError(
        `Map ${this.name} is ${this.type}: use ${method}PerCpu or entriesBatch`,
        { code: "per_cpu" },
      );
    }
  }

  #perCpuOnly(method: string): void {
    if (!this.perCpu) {
      throw new BpfError(
        `Map ${this.name} is ${this.type}, not per-CPU: ${method} needs a per-CPU map`,
        {
          code: "not_per_cpu",
        },
      );
    }
  }
}

/**
 * Reads a map's shape from the kernel.
 *
 * @param fd The map fd.
 * @param where Where it came from, for errors.
 * @returns The shape.
 */
function mapInfoByFd(fd: number, where: string): MapInfo {
  const info = new Uint8Array(96);
  const length = new Uint32Array([info.length]);
  const rc = libbpf().bpf_obj_get_info_by_fd(fd, info, new Uint8Array(length.buffer));
  if (rc < 0) throw BpfError.fromErrno(`Get info of map ${where}`, rc);
  const view = new DataView(info.buffer);
  const nameBytes = info.subarray(24, 40);
  const end = nameBytes.indexOf(0);
  return {
    type: mapTypeName(view.getUint32(0, true)),
    keySize: view.getUint32(8, true),
    valueSize: view.getUint32(12, true),
    maxEntries: view.getUint32(16, true),
    flags: view.getUint32(20, true),
    name: new TextDecoder().decode(nameBytes.subarray(0, end === -1 ? 16 : end)),
  };
}

/** @internal Creates the map handle of an object map. */
export function objectMapHandle(fd: number, owner: string): unknown {
  return { fd, owned: false, closed: false, owner } satisfies MapHandle;
}

/** @internal Marks an object map handle closed. */
export function closeObjectMapHandle(handle: unknown): void {
  (handle as MapHandle).closed = true;
}
