/**
 * A bounded-frequency runner, as kube-proxy's: `run()` requests a sync; requests made
 * while one runs coalesce into one more run after it; runs are rate-limited to one per
 * `minIntervalMs` by a token bucket of `burstRuns` tokens (kube-proxy's burstSyncs: 2 —
 * after a quiet spell, two runs may follow each other at once, then one per interval);
 * with `burstRuns` 1 runs are at least `minIntervalMs` apart. A run happens at least
 * every `maxIntervalMs` even without requests (the periodic resync that repairs drift); a
 * failed run is retried after a backoff (doubling from `retryMs` to `maxIntervalMs`), and
 * `onError` hears about it. Nothing runs before `start()`; `stop()` waits for a run in
 * progress.
 */
export interface RunnerOptions {
  name: string;
  fn: () => Promise<void>;
  minIntervalMs?: number;
  /** Runs allowed back to back after a quiet spell (the token bucket's size); default 1. */
  burstRuns?: number;
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
  private failures = 0;
  /** The token bucket: `tokens` as of `tokensAt`; it refills one per minIntervalMs up to burstRuns. */
  private tokens: number;
  private tokensAt = 0;

  constructor(private readonly o: RunnerOptions) {
    const burst = o.burstRuns ?? 1;
    if (!Number.isInteger(burst) || burst < 1) throw new Error(`runner ${o.name}: burstRuns must be an integer >= 1, got ${burst}`);
    this.tokens = burst;
  }

  /** Tokens now (fractional while refilling). */
  private available(now: number): number {
    const min = this.o.minIntervalMs ?? 0;
    if (min <= 0) return Infinity;
    return Math.min(this.o.burstRuns ?? 1, this.tokens + (now - this.tokensAt) / min);
  }

  /** Milliseconds until a token is there (0: now). */
  private untilToken(now: number): number {
    const t = this.available(now);
    return t >= 1 ? 0 : Math.ceil((1 - t) * (this.o.minIntervalMs ?? 0));
  }

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
    this.schedule(this.untilToken(Date.now()));
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
    const now = Date.now();
    // A periodic or retry run takes a token too when there is one (as kube-proxy's, whose
    // every run goes through the limiter); it never waits for one.
    const t = this.available(now);
    if (t !== Infinity) {
      this.tokens = Math.max(0, t - 1);
      this.tokensAt = now;
    }
    this.pending = false;
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
