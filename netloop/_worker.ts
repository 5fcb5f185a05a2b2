/**
 * The entry point of every loop Worker: imports the handler module, opens this loop's listener on
 * the chosen backend, and runs it until told to stop.
 *
 * @module
 */
import type { EventHandler } from "./event_handler.ts";
import type { LoopConfig, LoopCore } from "./_loop.ts";
import type { TlsStats } from "./tls.ts";
import { HandlerTimers } from "./_timers.ts";

/** Main thread → loop. */
export type ToLoop =
  | { type: "start"; config: LoopConfig; handlerUrl: string; control: Int32Array }
  | { type: "stop" }
  | { type: "message"; data: unknown }
  | { type: "tls"; id: number; op: "stats" }
  | {
    type: "tls";
    id: number;
    op: "reload";
    cert: string;
    key: string;
    certName: string;
    keyName: string;
  };

/** Loop → main thread. */
export type FromLoop =
  | { type: "ready"; address: { family: 4 | 6; address: string; port: number }; wakeFd: number }
  | { type: "failed"; message: string; code: string }
  | { type: "stopped" }
  | { type: "shutdown" }
  | { type: "message"; data: unknown }
  | { type: "tls"; id: number; error?: string; stats?: TlsStats };

/** Installed before any handler module is imported, so that it uses the wrapped timers. */
const timers = new HandlerTimers();
timers.install();

let loop: LoopCore | undefined;
let stopEarly = false;
let handled = 0;
let control: Int32Array | undefined;

/** The Worker's global scope, typed without the `deno.worker` lib (JSR bans that directive). */
const scope = globalThis as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent<ToLoop>) => void) | null;
};

function post(message: FromLoop): void {
  scope.postMessage(message);
}

async function createLoop(config: LoopConfig, handler: EventHandler): Promise<LoopCore> {
  const send = (message: unknown) => post(message as FromLoop);
  switch (config.backend) {
    case "uring": {
      const { UringLoop } = await import("./backends/uring/loop.ts");
      return new UringLoop(config, handler, send);
    }
    case "epoll": {
      const { EpollLoop } = await import("./backends/epoll.ts");
      return new EpollLoop(config, handler, send);
    }
    default: {
      const { PortableLoop } = await import("./backends/portable.ts");
      return new PortableLoop(config, handler, send);
    }
  }
}

async function start(config: LoopConfig, handlerUrl: string): Promise<void> {
  const module = await import(handlerUrl);
  const user: EventHandler = (module.default ?? module) as EventHandler;
  let handler = user;
  if (config.tls !== undefined && config.backend !== "portable") {
    // portable terminates TLS with Deno.listenTls itself (backends/portable.ts).
    const { tlsServerHandler } = await import("./_tls.ts");
    handler = tlsServerHandler(user, config.tls);
  }
  loop = await createLoop(config, handler);
  loop.userHandler = user;
  loop.control = control;
  loop.handlerTimers = timers;
  loop.handledMessages = handled;
  await loop.listen();
  const wakeFd = (loop as LoopCore & { wakeFd?: number }).wakeFd ?? -1;
  if (handler.onBoot !== undefined) {
    const result = await handler.onBoot(loop);
    if (result === 2) loop.shutdown();
  }
  post({ type: "ready", address: loop.address, wakeFd });
  if (stopEarly) loop.requestStop();
  await loop.run();
  try {
    handler.onShutdown?.(loop);
  } catch (error) {
    loop.logger.error("onShutdown threw", { error });
  }
}

scope.onmessage = (event: MessageEvent<ToLoop>) => {
  const message = event.data;
  if (message.type !== "start") {
    handled++;
    if (loop !== undefined) loop.handledMessages = handled;
  }
  if (message.type === "start") {
    control = message.control;
    start(message.config, message.handlerUrl).then(
      () => post({ type: "stopped" }),
      (error: Error & { code?: string }) => {
        post({ type: "failed", message: error.message, code: error.code ?? "loop_failed" });
      },
    );
  } else if (message.type === "stop") {
    if (loop === undefined) stopEarly = true;
    else loop.requestStop();
  } else if (message.type === "message") {
    loop?.message(message.data);
  } else if (message.type === "tls") {
    tlsControl(message).then(post);
  }
};

async function tlsControl(message: Extract<ToLoop, { type: "tls" }>): Promise<FromLoop> {
  const tls = await import("./_tls.ts");
  try {
    if (message.op === "reload") {
      const portable = loop as LoopCore & {
        reloadTls?(cert: string, key: string, certName: string, keyName: string): Promise<void>;
      };
      if (portable?.reloadTls !== undefined) {
        await portable.reloadTls(message.cert, message.key, message.certName, message.keyName);
      } else tls.reloadServer(message.cert, message.key, message.certName, message.keyName);
    }
    return { type: "tls", id: message.id, stats: tls.tlsStats() };
  } catch (error) {
    return { type: "tls", id: message.id, error: (error as Error).message };
  }
}
