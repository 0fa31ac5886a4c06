/**
 * A full garbage collection on request, for the moments a daemon knows it just dropped a lot:
 * after a large proxy sync. V8 collects the old generation only when it nears a limit that
 * grows with the heap, so the garbage of one big sync (a full transaction of ~40,000 ops at
 * 10,000 Services, a burst's re-plans) stays in the process's RSS until much later — measured:
 * 270 MB of heap in use 15 s after a burst whose live set was ~120 MB. A collection then gives
 * the pages back to the OS.
 *
 * `gc` is V8's own function, exposed the way the `expose-gc` package does it (the flag set at
 * runtime, the function taken from a fresh context), so operators need no node option.
 * Undefined where that does not work.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

function load(): (() => void) | undefined {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return existing;
  try {
    setFlagsFromString('--expose-gc');
    const fn: unknown = runInNewContext('gc');
    return typeof fn === 'function' ? (fn as () => void) : undefined;
  } catch {
    return undefined;
  }
}

export const fullGc: (() => void) | undefined = load();

/** Runs a full collection; returns how long it took and the heap in use before and after (MB), or undefined without `gc`. */
export function collect(): { ms: number; beforeMB: number; afterMB: number } | undefined {
  if (!fullGc) return undefined;
  const before = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  fullGc();
  const ms = performance.now() - t0;
  return { ms: Math.round(ms * 10) / 10, beforeMB: Math.round(before / 1e5) / 10, afterMB: Math.round(process.memoryUsage().heapUsed / 1e5) / 10 };
}
