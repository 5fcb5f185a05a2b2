/**
 * Runs in a Worker for `ebpf_object_test.ts`: loads one object that passes and one the verifier
 * rejects, and posts back what happened.
 *
 * @module
 */
import { VerifierError } from "@triad/ebpf";
import { ProbeObject } from "./ebpf_bpf/probe.gen.ts";
import { RejectedObject } from "./ebpf_bpf/rejected.gen.ts";

const scope = self as unknown as { postMessage(message: unknown): void; close(): void };
let loaded = false;
{
  using probe = ProbeObject.open({ globals: { target_tgid: 1 } });
  await probe.load();
  loaded = probe.object.programs.length === 2;
}
let verifier = false;
let instruction = -1;
try {
  using rejected = RejectedObject.open();
  await rejected.load();
} catch (error) {
  verifier = error instanceof VerifierError;
  instruction = error instanceof VerifierError ? error.failure.instruction ?? -1 : -1;
}
scope.postMessage({ loaded, verifier, instruction });
