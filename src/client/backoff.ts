/**
 * Time for the retry loops: an injectable `Clock` (real timers in production, a fake in
 * tests) and `Backoff`, exponential with jitter and a cap, as client-go's
 * wait.Backoff: delay_n = min(max, base · factor^n), less up to `jitter` of it at random.
 */
import { setTimeout as sleepTimer } from 'node:timers/promises';

export interface Clock {
  /** Milliseconds, monotonic enough for measuring durations. */
  now(): number;
  /** Resolves after `ms`, or early (never rejecting) when `signal` fires. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

/** Real time: performance.now() and timers that do not outlive an abort. */
export const realClock: Clock = {
  now: () => performance.now(),
  sleep: async (ms, signal) => {
    if (signal.aborted) return;
    try {
      await sleepTimer(ms, undefined, { signal });
    } catch {
      /* aborted: wake up early */
    }
  },
};

export interface BackoffOptions {
  /** First delay, ms. Default 800 (client-go's reflector). */
  baseMs?: number;
  /** Cap, ms. Default 30 000. */
  maxMs?: number;
  /** Growth per failure. Default 2. */
  factor?: number;
  /** Fraction of a delay removed at random, 0..1. Default 0.5: delays fall in [d/2, d]. */
  jitter?: number;
  /** Uniform in [0, 1). Default Math.random. */
  random?: () => number;
}

export class Backoff {
  readonly baseMs: number;
  readonly maxMs: number;
  readonly factor: number;
  readonly jitter: number;
  readonly #random: () => number;
  #attempts = 0;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 800;
    this.maxMs = Math.max(opts.maxMs ?? 30_000, this.baseMs);
    this.factor = opts.factor ?? 2;
    this.jitter = Math.min(Math.max(opts.jitter ?? 0.5, 0), 1);
    this.#random = opts.random ?? Math.random;
  }

  /** Failures since the last reset. */
  get attempts(): number {
    return this.#attempts;
  }

  /** The delay before the next try; counts one failure. */
  next(): number {
    const d = Math.min(this.maxMs, this.baseMs * this.factor ** this.#attempts);
    this.#attempts++;
    return Math.round(d * (1 - this.jitter * this.#random()));
  }

  /** After a success. */
  reset(): void {
    this.#attempts = 0;
  }
}
