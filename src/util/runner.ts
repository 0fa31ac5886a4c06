/**
 * A bounded-frequency runner, as kube-proxy's: `run()` requests a sync; requests made
 * while one runs coalesce into one more run after it; runs are at least `minIntervalMs`
 * apart; a run happens at least every `maxIntervalMs` even without requests (the periodic
 * resync that repairs drift); a failed run is retried after a backoff (doubling from
 * `retryMs` to `maxIntervalMs`), and `onError` hears about it. Nothing runs before
 * `start()`; `stop()` waits for a run in progress.
 */
export interface RunnerOptions {
  name: string;
  fn: () => Promise<void>;
  minIntervalMs?: number;
  maxIntervalMs: number;
  retryMs?: number;
  onError?: (err: unknown, retryInMs: number) => void;
}

export class BoundedFrequencyRunner {
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private running: Promise<void> | undefined;
  private pending = false;
  private started = false;
  private lastRun = 0;
  private failures = 0;

  constructor(private readonly o: RunnerOptions) {}

  /** Starts the periodic runs and runs once now. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.run();
  }

  /** Requests a run (soon, respecting the minimum interval). */
  run(): void {
    if (!this.started) return;
    if (this.running) {
      this.pending = true;
      return;
    }
    const wait = Math.max(0, this.lastRun + (this.o.minIntervalMs ?? 0) - Date.now());
    this.schedule(wait);
  }

  async stop(): Promise<void> {
    this.started = false;
    this.cancel();
    await this.running;
  }

  private cancel(): void {
    clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }

  /** A run after `ms`; with 0, in this turn of the event loop (setTimeout(0) would wait at least 1 ms). */
  private schedule(ms: number): void {
    this.cancel();
    if (ms <= 0) {
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        void this.tick();
      });
      return;
    }
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref?.();
  }

  private async tick(): Promise<void> {
    if (!this.started || this.running) return;
    this.pending = false;
    this.lastRun = Date.now();
    let next = this.o.maxIntervalMs;
    this.running = this.o.fn().then(
      () => {
        this.failures = 0;
      },
      (e: unknown) => {
        this.failures++;
        next = Math.min(this.o.maxIntervalMs, (this.o.retryMs ?? 100) * 2 ** (this.failures - 1));
        this.o.onError?.(e, next);
      },
    );
    await this.running;
    this.running = undefined;
    if (!this.started) return;
    if (this.pending && this.failures === 0) this.run();
    else this.schedule(next);
  }
}
