/**
 * {@linkcode Skeleton}: the base of the typed skeletons bpf2ts generates — the object with its
 * programs, maps and globals reachable by name with their types.
 *
 * @module
 */
import type { BpfMap } from "./map.ts";
import type { BpfObject } from "./object.ts";
import type { Program } from "./program.ts";

/**
 * A typed view of a {@linkcode BpfObject}; generated `<Name>Object` classes extend it with the
 * object's program, map and global types.
 *
 * @typeParam P The programs, by name.
 * @typeParam M The maps, by name.
 * @typeParam G The global variables, by name.
 */
export class Skeleton<
  P extends { [K in keyof P]: Program },
  // deno-lint-ignore no-explicit-any
  M extends { [K in keyof M]: BpfMap<any, any> },
  G,
> implements Disposable {
  /** The underlying object. */
  readonly object: BpfObject;
  readonly #programNames: readonly string[];
  readonly #mapNames: readonly string[];

  /**
   * Wraps an opened object.
   *
   * @param object The object.
   * @param programNames Its programs' names.
   * @param mapNames Its maps' names (internal `.rodata`/`.bss` maps left out).
   */
  constructor(object: BpfObject, programNames: readonly string[], mapNames: readonly string[]) {
    this.object = object;
    this.#programNames = programNames;
    this.#mapNames = mapNames;
  }

  /** Loads programs and maps into the kernel. */
  load(): Promise<void> {
    return this.object.load();
  }

  /**
   * The programs, keyed by name (after load): `probe.programs.handle_exec`. (On the underlying
   * {@linkcode BpfObject}, `programs` is an array and `program(name)` finds one.)
   */
  get programs(): P {
    return Object.fromEntries(
      this.#programNames.map((name) => [name, this.object.program(name)]),
    ) as P;
  }

  /**
   * The maps, keyed by name (after load; internal `.rodata`/`.bss` maps left out):
   * `probe.maps.events`. (On the underlying {@linkcode BpfObject}, `maps` is an array and
   * `map(name)` finds one.)
   */
  get maps(): M {
    return Object.fromEntries(this.#mapNames.map((name) => [name, this.object.map(name)])) as M;
  }

  /**
   * Reads a global variable's current value.
   *
   * @param name The variable.
   * @returns Its value.
   */
  readGlobal<K extends keyof G & string>(name: K): G[K] {
    return this.object.readGlobal<G[K]>(name);
  }

  /** Detaches, unloads and releases everything. */
  close(): void {
    this.object.close();
  }

  /** Same as {@linkcode Skeleton.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Decodes the base64 object bytes that bpf2ts embeds in generated modules.
 *
 * @param base64 The object, base64-encoded.
 * @returns The bytes.
 */
export function decodeObjectBytes(base64: string): Uint8Array<ArrayBuffer> {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
