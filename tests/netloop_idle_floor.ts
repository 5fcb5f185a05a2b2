/**
 * The runtime's own cost of an idle loop, for netloop_idle_cost_test.ts to compare against: a
 * Worker that blocks a second at a time in epoll_wait (FFI) and gives its event loop one turn per
 * wake-up, as an idle netloop loop does, with nothing else to do. Prints `floor` once running.
 */
if ((self as { name?: string }).name === "floor") {
  const libc = Deno.dlopen("libc.so.6", {
    epoll_create1: { parameters: ["i32"], result: "i32" },
    epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  });
  const epfd = libc.symbols.epoll_create1(0);
  const events = new Uint8Array(12 * 64);
  (self as unknown as { postMessage(message: string): void }).postMessage("running");
  for (;;) {
    libc.symbols.epoll_wait(epfd, events, 64, 1000);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
} else {
  const worker = new Worker(import.meta.url, { type: "module", name: "floor" });
  worker.onmessage = () => console.log("floor");
}
