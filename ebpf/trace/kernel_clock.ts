/**
 * {@linkcode KernelClock}: kernel boot-clock timestamps to wall-clock time.
 *
 * @module
 */

/**
 * Converts kernel boot-clock nanoseconds (`bpf_ktime_get_boot_ns`) to wall-clock milliseconds.
 * The offset starts from `/proc/uptime` (10 ms resolution) and is tightened with every record
 * observed: a record is never stamped later than the moment it was read.
 */
export class KernelClock {
  #offsetMs: number;

  /**
   * Creates a clock.
   *
   * @param offsetMs Wall-clock milliseconds at boot; read from `/proc/uptime` when omitted.
   */
  constructor(offsetMs?: number) {
    this.#offsetMs = offsetMs ?? KernelClock.bootOffsetMs();
  }

  /**
   * Wall-clock milliseconds at boot as `/proc/uptime` tells it (or 0 where it is unreadable).
   *
   * @returns Milliseconds since the epoch at boot.
   */
  static bootOffsetMs(): number {
    try {
      const uptime = Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
      return Date.now() - uptime * 1000;
    } catch {
      return 0;
    }
  }

  /**
   * Returns the wall-clock time of a kernel timestamp, tightening the offset with the time it
   * was read.
   *
   * @param kernelNs Boot-clock nanoseconds.
   * @param observedMs When the record was read (wall-clock ms).
   * @returns Wall-clock milliseconds.
   */
  toWallMs(kernelNs: bigint, observedMs: number = Date.now()): number {
    const kernelMs = Number(kernelNs) / 1e6;
    if (observedMs - kernelMs < this.#offsetMs) this.#offsetMs = observedMs - kernelMs;
    return this.#offsetMs + kernelMs;
  }
}
