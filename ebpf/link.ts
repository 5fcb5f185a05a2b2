/**
 * {@linkcode Link}: an attached program. Closing it (or leaving a `using` block) detaches the
 * program unless the link was pinned to bpffs.
 *
 * @module
 */
import { cString, errno, libbpf, libc, toCString } from "./_ffi.ts";
import { BpfError } from "./errors.ts";

const internal = Symbol("internal");

/** How a link detaches (internal): libbpf's `bpf_link`, a plain link fd, or a function. */
export type LinkBackend =
  | { kind: "libbpf"; pointer: Deno.PointerObject }
  | { kind: "fd"; fd: number }
  | { kind: "custom"; detach: () => void };

/**
 * An attached program. `close()` detaches it (a pinned link stays attached until unpinned).
 *
 * @example
 * ```ts ignore
 * import { BpfObject } from "@triad/ebpf";
 *
 * using obj = BpfObject.open("prog.bpf.o");
 * await obj.load();
 * using link = obj.program("handle_exec").attach();
 * console.log(link.description, link.id);
 * ```
 */
export class Link implements Disposable {
  /** What is attached where, such as `handle_exec → tracepoint sched/sched_process_exec`. */
  readonly description: string;
  #backend: LinkBackend | undefined;
  #onClose: (() => void) | undefined;

  /** @internal Use `Program.attach*` or {@linkcode Link.fromPin}. */
  constructor(
    token: unknown,
    description: string,
    backend: unknown,
    onClose?: () => void,
  ) {
    if (token !== internal) throw new TypeError("Link is created by Program.attach*()");
    this.description = description;
    this.#backend = backend as LinkBackend;
    this.#onClose = onClose;
  }

  /**
   * Opens a link pinned in bpffs.
   *
   * @param path The pin path, such as `/sys/fs/bpf/my_link`.
   * @returns The link; closing it leaves the pin (and the attachment) in place.
   */
  static fromPin(path: string): Link {
    const pointer = libbpf().bpf_link__open(toCString(path));
    if (pointer === null) throw BpfError.fromErrno(`Open pinned link ${path}`, errno());
    return new Link(internal, `pinned link ${path}`, { kind: "libbpf", pointer });
  }

  /** The link's file descriptor (-1 for links that are not kernel link objects, such as tc). */
  get fd(): number {
    const backend = this.#open();
    if (backend.kind === "libbpf") return libbpf().bpf_link__fd(backend.pointer);
    return backend.kind === "fd" ? backend.fd : -1;
  }

  /** The kernel's id of this link (as `bpftool link list` shows), or 0 for tc links. */
  get id(): number {
    const fd = this.fd;
    if (fd < 0) return 0;
    const info = new Uint8Array(64);
    const length = new Uint32Array([info.length]);
    const rc = libbpf().bpf_obj_get_info_by_fd(fd, info, new Uint8Array(length.buffer));
    if (rc < 0) throw BpfError.fromErrno(`Get info of link ${this.description}`, rc);
    return new DataView(info.buffer).getUint32(4, true);
  }

  /** Whether the link is still open. */
  get open(): boolean {
    return this.#backend !== undefined;
  }

  /**
   * Pins the link to bpffs, so it stays attached after this process exits.
   *
   * @param path The pin path, such as `/sys/fs/bpf/my_link` (bpffs must be mounted).
   */
  pin(path: string): void {
    const backend = this.#open();
    if (backend.kind === "libbpf") {
      const rc = libbpf().bpf_link__pin(backend.pointer, toCString(path));
      if (rc < 0) throw BpfError.fromErrno(`Pin link ${this.description} at ${path}`, rc);
    } else if (backend.kind === "fd") {
      const rc = libbpf().bpf_obj_pin(backend.fd, toCString(path));
      if (rc < 0) throw BpfError.fromErrno(`Pin link ${this.description} at ${path}`, rc);
    } else {
      throw new BpfError(`Link ${this.description} cannot be pinned (netlink tc attachment)`, {
        code: "unsupported",
      });
    }
  }

  /** Removes the link's pin (the link stays attached while this handle is open). */
  unpin(): void {
    const backend = this.#open();
    if (backend.kind !== "libbpf") {
      throw new BpfError(`Link ${this.description} was not pinned through this handle`, {
        code: "not_pinned",
      });
    }
    const rc = libbpf().bpf_link__unpin(backend.pointer);
    if (rc < 0) throw BpfError.fromErrno(`Unpin link ${this.description}`, rc);
  }

  /** The path the link is pinned at, or `undefined`. */
  get pinPath(): string | undefined {
    const backend = this.#backend;
    if (backend?.kind !== "libbpf") return undefined;
    const path = cString(libbpf().bpf_link__pin_path(backend.pointer));
    return path === "" ? undefined : path;
  }

  /** Detaches (unless pinned) and releases the link. Safe to call twice. */
  close(): void {
    const backend = this.#backend;
    if (backend === undefined) return;
    this.#backend = undefined;
    try {
      if (backend.kind === "libbpf") libbpf().bpf_link__destroy(backend.pointer);
      else if (backend.kind === "fd") libc().close(backend.fd);
      else backend.detach();
    } finally {
      this.#onClose?.();
    }
  }

  /** Same as {@linkcode Link.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #open(): LinkBackend {
    if (this.#backend === undefined) {
      throw new BpfError(`Link ${this.description} is closed`, { code: "closed" });
    }
    return this.#backend;
  }
}

/** @internal Creates links; only for `@triad/ebpf` itself. */
export function createLink(
  description: string,
  backend: LinkBackend,
  onClose?: () => void,
): Link {
  return new Link(internal, description, backend, onClose);
}
