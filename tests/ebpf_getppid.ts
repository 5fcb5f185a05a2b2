/**
 * Real `getppid` system calls, the trigger of the test programs attached to
 * `syscalls/sys_enter_getppid`.
 *
 * @module
 */
const libc = Deno.dlopen("libc.so.6", { getppid: { parameters: [], result: "i32" } });

/**
 * Makes `count` real getppid system calls.
 *
 * @param count How many.
 */
export function getppid(count = 1): void {
  for (let i = 0; i < count; i++) libc.symbols.getppid();
}
