/**
 * One layer of configuration: a tree, and where each of its values came from.
 *
 * @module
 */
import type { LayerName, Origin } from "./origin.ts";

/**
 * A tree of values from one source (a file, the environment, flags, a remote key space) with the
 * origin of every node, keyed by dotted path.
 */
export interface Layer {
  /** The layer this belongs to. */
  readonly kind: LayerName;
  /** A name for messages: the file, `env`, `flags`, `etcd http://…/app/`. */
  readonly name: string;
  /** The values. */
  readonly tree: Record<string, unknown>;
  /** Origin of each node by dotted path; a node without one inherits its parent's. */
  readonly origins: ReadonlyMap<string, Origin>;
}
