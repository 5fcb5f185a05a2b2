/**
 * Checks what io_uring can do here: whether a ring can be set up at all (kernel.io_uring_disabled
 * and seccomp profiles say no with EPERM), which opcodes IORING_REGISTER_PROBE lists, and which
 * of the features the loop uses are available. Each missing feature downgrades one thing.
 *
 * @module
 */
import { Feature, Op, Ring, Setup } from "./ring.ts";
import { ffiAllowed } from "../../_ffi.ts";

/** What the uring loop may use. */
export interface UringFeatures {
  /** Multishot accept (5.19). Off: one accept re-armed per connection. */
  multishotAccept: boolean;
  /** Provided buffer ring (5.19). Off: each connection receives into its own buffer. */
  bufferRing: boolean;
  /** Multishot recv/recvmsg (6.0, needs the buffer ring). Off: one recv re-armed per read. */
  multishotRecv: boolean;
  /** A registered ring fd (5.18). */
  registeredRing: boolean;
}

/** The outcome of {@linkcode probeUring}. */
interface UringProbe {
  ok: boolean;
  /** A human-readable summary: why not, or what is on and off. */
  summary: string;
  features: UringFeatures;
  /** The last opcode the kernel knows (0 when not probed): tells the kernel generation. */
  lastOp: number;
}

const REQUIRED: [number, string][] = [
  [Op.ACCEPT, "ACCEPT"],
  [Op.RECV, "RECV"],
  [Op.SEND, "SEND"],
  [Op.RECVMSG, "RECVMSG"],
  [Op.SENDMSG, "SENDMSG"],
  [Op.CONNECT, "CONNECT"],
  [Op.READ, "READ"],
  [Op.ASYNC_CANCEL, "ASYNC_CANCEL"],
];

const NONE: UringFeatures = {
  multishotAccept: false,
  bufferRing: false,
  multishotRecv: false,
  registeredRing: false,
};

function disabledSetting(): string {
  try {
    const value = Deno.readTextFileSync("/proc/sys/kernel/io_uring_disabled").trim();
    return value === "0" ? "" : ` (kernel.io_uring_disabled=${value})`;
  } catch {
    return "";
  }
}

/**
 * Probes io_uring on a small throwaway ring.
 *
 * @param disabled Features to leave off (`multishot`, `bufring`, `regring`), for tests.
 * @returns Whether the uring backend can run, and with what.
 */
export function probeUring(disabled: readonly string[] = []): UringProbe {
  if (Deno.build.os !== "linux") {
    return { ok: false, summary: "not Linux", features: NONE, lastOp: 0 };
  }
  if (!ffiAllowed()) return { ok: false, summary: "FFI not allowed", features: NONE, lastOp: 0 };
  let ring: Ring;
  try {
    ring = Ring.create({ entries: 8, cqEntries: 16, flagSets: [0] });
  } catch (error) {
    const message = (error as Error).message;
    const hint = message.includes("EPERM")
      ? `${disabledSetting() || " (io_uring disabled by sysctl or a seccomp profile)"}`
      : message.includes("ENOSYS")
      ? " (kernel without io_uring)"
      : "";
    return { ok: false, summary: `${message}${hint}`, features: NONE, lastOp: 0 };
  }
  try {
    if ((ring.features & Feature.EXT_ARG) === 0) {
      return {
        ok: false,
        summary: "io_uring lacks IORING_FEAT_EXT_ARG (needs Linux 5.11)",
        features: NONE,
        lastOp: 0,
      };
    }
    const { supported, lastOp } = ring.probe();
    const missing = REQUIRED.filter(([op]) => !supported.has(op)).map(([, name]) => name);
    if (missing.length > 0) {
      return {
        ok: false,
        summary: `io_uring lacks opcodes ${missing.join(", ")} (needs Linux 5.7)`,
        features: NONE,
        lastOp,
      };
    }
    // Opcodes that arrived with a feature tell the kernel generation: SOCKET (45) with multishot
    // accept and buffer rings in 5.19, SEND_ZC (47) with multishot recv in 6.0.
    const has519 = lastOp >= Op.SOCKET;
    const has60 = supported.has(Op.SEND_ZC);
    const features: UringFeatures = {
      multishotAccept: has519 && !disabled.includes("multishot"),
      bufferRing: has519 && !disabled.includes("bufring"),
      multishotRecv: has60 && !disabled.includes("multishot") && !disabled.includes("bufring"),
      registeredRing: has519 && !disabled.includes("regring"),
    };
    const on = Object.entries(features).filter(([, v]) => v).map(([k]) => k);
    const off = Object.entries(features).filter(([, v]) => !v).map(([k]) => k);
    const summary = `opcodes up to ${lastOp}; on: ${on.join(", ") || "none"}` +
      (off.length > 0 ? `; off: ${off.join(", ")}` : "");
    return { ok: true, summary, features, lastOp };
  } finally {
    ring.close();
  }
}

/** Setup flag sets to try, newest first. */
export const FLAG_SETS: number[] = [
  Setup.SUBMIT_ALL | Setup.SINGLE_ISSUER | Setup.DEFER_TASKRUN | Setup.NO_SQARRAY | Setup.CLAMP,
  Setup.SUBMIT_ALL | Setup.SINGLE_ISSUER | Setup.DEFER_TASKRUN | Setup.CLAMP,
  Setup.SUBMIT_ALL | Setup.COOP_TASKRUN | Setup.CLAMP,
  Setup.CLAMP,
];
