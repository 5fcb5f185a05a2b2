/**
 * The defaults layer: the `defaults` option, below every other layer.
 *
 * @module
 */
import type { Layer } from "../layer.ts";
import type { Source, SourceLayer } from "../source.ts";
import { isPlainObject, mapTree } from "../_path.ts";

/** The `defaults` option as a {@linkcode Source}; a copy, so later changes to it do not leak in. */
export class DefaultsSource implements Source {
  readonly name = "defaults";
  readonly #tree: Record<string, unknown>;

  constructor(defaults: unknown) {
    const copy = mapTree(defaults ?? {}, (leaf) => leaf);
    this.#tree = isPlainObject(copy) ? copy : {};
  }

  /** The layer (the same copy every time). */
  read(): Layer {
    return {
      kind: "defaults",
      name: "defaults",
      tree: this.#tree,
      origins: new Map([["", { layer: "defaults" }]]),
    };
  }

  load(): Promise<SourceLayer> {
    return Promise.resolve(this.read());
  }
}
