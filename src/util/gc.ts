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
 * A plain full collection frees the garbage but may leave old-space pages with a few live
 * objects each committed; V8 evacuates the most fragmented pages in the next collections, a
 * bounded amount each. So collect() repeats plain collections while the heap shrinks, and
 * compacts everything (V8's `--compact-on-every-full-gc`, which it reads when a collection
 * starts, set for that one collection only) only when the old space is still fragmented
 * after them — a full compaction maps new pages for the whole live set while the old ones are
 * still there, a moment of extra RSS (see collect). Measured at 10,000 Services × 10
 * endpoints (nftables agent, 15 s after a burst): old space committed 143–163 MB for ~110 MB
 * live after one plain collection.
 */
import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Plain collections per collect() at most, and the shrink of the committed heap that makes another worth it. */
const MAX_COLLECTIONS = 5;
const SHRINK_MIN_BYTES = 1 << 20;
/** Old space still committed beyond this after them (× used + slack): compact after all. */
const FRAGMENTED_RATIO = 1.5;
const FRAGMENTED_SLACK = 8 << 20;

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

/** What collect() did: its time, the heap in use and committed before and after (MB), how many plain collections ran and whether it compacted. */
export interface Collection {
  ms: number;
  beforeMB: number;
  afterMB: number;
  committedBeforeMB: number;
  committedAfterMB: number;
  collections: number;
  compacted: boolean;
}

/** Runs full collections until the heap stops shrinking, compacting at the end only if the old space is still fragmented; undefined without `gc`. */
export function collect(): Collection | undefined {
  if (!fullGc) return undefined;
  const mb = (n: number) => Math.round(n / 1e5) / 10;
  const before = getHeapStatistics();
  const t0 = performance.now();
  // Plain collections, repeated while the heap shrinks. Each frees the garbage and, from
  // the second on (when the first has counted each page's live bytes), evacuates the live
  // objects of the most fragmented pages — a bounded amount per collection, V8's own
  // heuristic — and gives those pages back. A compacting collection
  // (--compact-on-every-full-gc) would evacuate every page at once: new pages for the whole
  // live set while all the old ones are still mapped. Measured in the agents at 10,000
  // Services: that raised the process's peak RSS from ~292 MB (the first full sync) to
  // 368–390 MB for a moment; in-process, three plain collections took the old space from 155
  // to 122 MB committed (92 MB live) without raising RSS above where it was.
  let committed = getHeapStatistics().total_heap_size;
  let collections = 0;
  for (let i = 0; i < MAX_COLLECTIONS; i++) {
    fullGc();
    collections++;
    const now = getHeapStatistics().total_heap_size;
    if (i > 0 && committed - now < SHRINK_MIN_BYTES) break;
    committed = now;
  }
  // V8 evacuates only pages that are mostly free; a heap whose every page is, say, a third
  // live stays at ~3x. Then compacting is worth its moment of extra pages.
  const old = getHeapSpaceStatistics().find((sp) => sp.space_name === 'old_space');
  const compacted = !!old && old.space_size > old.space_used_size * FRAGMENTED_RATIO + FRAGMENTED_SLACK;
  if (compacted) {
    setFlagsFromString('--compact-on-every-full-gc');
    try {
      fullGc();
    } finally {
      setFlagsFromString('--no-compact-on-every-full-gc');
    }
  }
  const ms = performance.now() - t0;
  const after = getHeapStatistics();
  return { ms: Math.round(ms * 10) / 10, beforeMB: mb(before.used_heap_size), afterMB: mb(after.used_heap_size), committedBeforeMB: mb(before.total_heap_size), committedAfterMB: mb(after.total_heap_size), collections, compacted };
}
