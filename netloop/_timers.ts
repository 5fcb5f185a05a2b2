/**
 * The handler timers of a loop Worker: `setTimeout` and `setInterval` wrapped so that an idle loop
 * knows when the next one is due and can block in the kernel until then, rather than waking
 * several times a second in case one is.
 *
 * @module
 */

type Callback = (...args: unknown[]) => void;
type SetTimer = (callback: Callback | string, ms?: number, ...args: unknown[]) => unknown;
type ClearTimer = (id?: unknown) => void;

/** The global timer functions, as the Worker's scope has them (ids are numbers in Deno). */
interface TimerScope {
  setTimeout: SetTimer;
  setInterval: SetTimer;
  clearTimeout: ClearTimer;
  clearInterval: ClearTimer;
}

/** When each pending handler timer is next due (`performance.now()` milliseconds), by id. */
export class HandlerTimers {
  readonly #due = new Map<unknown, number>();
  /** Never later than the earliest entry of #due (a cleared timer may leave it earlier). */
  #earliest = Infinity;
  /**
   * When a handler timer last ran (`performance.now()`): what its callback started (a `fetch`, a
   * file read) completes on the Worker's event loop, so the loop counts as busy for a while.
   */
  lastFired = -Infinity;

  /**
   * Wraps the scope's timer functions (once, before the handler module is imported, so that it
   * and everything it imports use the wrapped ones).
   */
  install(scope: TimerScope = globalThis as unknown as TimerScope): void {
    const { setTimeout: set, setInterval: every, clearTimeout: clear, clearInterval: stop } = scope;
    const due = this.#due;
    const note = (id: unknown, ms: unknown) => {
      const at = performance.now() + Math.max(0, Number(ms) || 0);
      due.set(id, at);
      if (at < this.#earliest) this.#earliest = at;
    };
    // A timeout is forgotten when it runs; an interval is due again one period after each run.
    const wrap = (arm: SetTimer, repeats: boolean): SetTimer => (callback, ms, ...args) => {
      if (typeof callback !== "function") return arm(callback, ms, ...args);
      const id = arm(
        (...a: unknown[]) => {
          if (repeats) note(id, ms);
          else due.delete(id);
          this.lastFired = performance.now();
          callback(...a);
        },
        ms,
        ...args,
      );
      note(id, ms);
      return id;
    };
    const unwrap = (disarm: ClearTimer): ClearTimer => (id) => {
      due.delete(id);
      disarm(id);
    };
    scope.setTimeout = wrap(set, false);
    scope.setInterval = wrap(every, true);
    scope.clearTimeout = unwrap(clear);
    scope.clearInterval = unwrap(stop);
  }

  /** Pending handler timers. */
  get pending(): number {
    return this.#due.size;
  }

  /**
   * Milliseconds from `now` until the next handler timer is due: Infinity when none is pending, at
   * least 1 when one is overdue (the event loop runs it on the loop's next turn; a 1 ms wait
   * keeps the loop from spinning until its clock agrees).
   */
  until(now: number): number {
    if (this.#due.size === 0) {
      this.#earliest = Infinity;
      return Infinity;
    }
    if (this.#earliest <= now) {
      // The earliest was run or cleared (or is overdue): find the next (idle loops only ask).
      let earliest = Infinity;
      for (const at of this.#due.values()) if (at < earliest) earliest = at;
      this.#earliest = earliest;
    }
    return Math.max(1, this.#earliest - now);
  }
}
