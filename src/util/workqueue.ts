/**
 * A keyed work queue, as client-go's workqueue: adding a key that is already queued is a
 * no-op (changes coalesce); a key is never processed by two workers at once — added
 * again while it runs, it runs once more afterwards; up to `concurrency` keys run in
 * parallel; a failure is retried after an exponential backoff (50 ms doubling to 30 s).
 */
import type { Logger } from './log.js';

export interface WorkQueueOptions {
  process: (key: string) => Promise<void>;
  log: Logger;
  /** For log lines. */
  name: string;
  /** Keys processed at once. Default 1. */
  concurrency?: number;
  /** Told about each failure with the backoff chosen (metrics). */
  onFailure?: (key: string, err: unknown, retryInMs: number) => void;
}

export class KeyedWorkQueue {
  private readonly pending = new Set<string>();
  private readonly active = new Set<string>();
  /** Keys added while active: they run again when done. */
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private workers = 0;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  private readonly concurrency: number;

  constructor(private readonly opts: WorkQueueOptions) {
    this.concurrency = Math.max(1, opts.concurrency ?? 1);
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.active.has(key)) {
      this.dirty.add(key);
      return;
    }
    this.pending.add(key);
    this.kick();
  }

  /** Keys queued or running. */
  get length(): number {
    return this.pending.size + this.active.size;
  }

  stop(): void {
    this.stopped = true;
    this.pending.clear();
    this.dirty.clear();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (!this.workers) this.notifyIdle();
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (!this.workers && !this.pending.size) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private kick(): void {
    while (this.workers < this.concurrency && this.pending.size) {
      this.workers++;
      setImmediate(() => void this.work());
    }
  }

  private async work(): Promise<void> {
    while (!this.stopped) {
      const key = this.pending.values().next().value as string | undefined;
      if (key === undefined) break;
      this.pending.delete(key);
      this.active.add(key);
      try {
        await this.opts.process(key);
        this.failures.delete(key);
      } catch (e) {
        const n = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, n);
        const delay = Math.min(30_000, 50 * 2 ** Math.min(n, 10));
        this.opts.onFailure?.(key, e, delay);
        this.opts.log.warn({ queue: this.opts.name, key, attempt: n, retryInMs: delay, err: e instanceof Error ? e.message : String(e) }, 'sync failed; will retry');
        const t = setTimeout(() => {
          this.timers.delete(t);
          this.add(key);
        }, delay);
        t.unref();
        this.timers.add(t);
      } finally {
        this.active.delete(key);
        if (this.dirty.delete(key)) this.pending.add(key);
      }
    }
    this.workers--;
    if (!this.workers && !this.pending.size) this.notifyIdle();
  }

  private notifyIdle(): void {
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
