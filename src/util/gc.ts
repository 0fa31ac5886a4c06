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
 *
 * A plain full collection frees the garbage but leaves the old generation's pages where
 * they are: pages with a few live objects each stay committed. So this collection also
 * compacts — V8's `--compact-on-every-full-gc`, which it reads when a collection starts, is
 * set for this one collection only (V8's own collections keep their cheaper choice).
 * Measured at 10,000 Services × 10 endpoints (nftables agent, 15 s after a burst): old space
 * committed 143–163 MB for ~110 MB live without it.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
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

/** Runs a full, compacting collection; returns how long it took and the heap in use and committed before and after (MB), or undefined without `gc`. */
export function collect(): { ms: number; beforeMB: number; afterMB: number; committedBeforeMB: number; committedAfterMB: number } | undefined {
  if (!fullGc) return undefined;
  const mb = (n: number) => Math.round(n / 1e5) / 10;
  const before = getHeapStatistics();
  const t0 = performance.now();
  // First a plain collection: it frees the garbage, and pages left empty go back to the OS.
  // Compacting at once would evacuate the live objects into new pages while all the garbage
  // is still mapped: the process's peak RSS grows by the live set (measured at 10k in
  // separate quick runs: VmHWM 455–503 MB compacting at once, 389 MB with this plain
  // collection first, 357–426 in earlier runs without compaction).
  fullGc();
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    fullGc();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
  const ms = performance.now() - t0;
  const after = getHeapStatistics();
  return { ms: Math.round(ms * 10) / 10, beforeMB: mb(before.used_heap_size), afterMB: mb(after.used_heap_size), committedBeforeMB: mb(before.total_heap_size), committedAfterMB: mb(after.total_heap_size) };
}
