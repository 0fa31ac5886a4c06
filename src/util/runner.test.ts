import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BoundedFrequencyRunner } from './runner.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A sync function whose runs can be held open; counts runs. */
function syncFn() {
  const s = {
    runs: 0,
    hold: undefined as undefined | { release: () => void },
    fail: 0,
    fn: async () => {
      s.runs++;
      if (s.hold) await new Promise<void>((r) => (s.hold!.release = r));
      if (s.fail > 0) {
        s.fail--;
        throw new Error('boom');
      }
    },
  };
  return s;
}

describe('BoundedFrequencyRunner', () => {
  it('does nothing before start(); start() runs once now', async () => {
    const s = syncFn();
    const r = new BoundedFrequencyRunner({ name: 't', fn: s.fn, maxIntervalMs: 1000 });
    r.run();
    await vi.advanceTimersByTimeAsync(10);
    expect(s.runs).toBe(0);
    r.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(s.runs).toBe(1);
    await r.stop();
  });

  it('resyncs every maxIntervalMs without requests (the drift repair)', async () => {
    const s = syncFn();
    const r = new BoundedFrequencyRunner({ name: 't', fn: s.fn, maxIntervalMs: 1000 });
    r.start();
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(3500);
    expect(s.runs).toBe(4);
    await r.stop();
    await vi.advanceTimersByTimeAsync(5000);
    expect(s.runs).toBe(4);
  });

  it('coalesces requests made during a run into exactly one more run', async () => {
    const s = syncFn();
    s.hold = { release: () => undefined };
    const r = new BoundedFrequencyRunner({ name: 't', fn: s.fn, maxIntervalMs: 60_000 });
    r.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(s.runs).toBe(1);
    for (let i = 0; i < 10; i++) r.run();
    const release = s.hold.release;
    s.hold = undefined;
    release();
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(s.runs).toBe(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(s.runs).toBe(2);
    await r.stop();
  });

  it('keeps runs at least minIntervalMs apart', async () => {
    const s = syncFn();
    const r = new BoundedFrequencyRunner({ name: 't', fn: s.fn, minIntervalMs: 500, maxIntervalMs: 60_000 });
    r.start();
    await vi.advanceTimersByTimeAsync(0);
    r.run();
    await vi.advanceTimersByTimeAsync(499);
    expect(s.runs).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(s.runs).toBe(2);
    await r.stop();
  });

  it('with burstRuns 2 (kube-proxy\'s burstSyncs) a quiet runner runs twice back to back, then once per minIntervalMs', async () => {
    const s = syncFn();
    const r = new BoundedFrequencyRunner({ name: 't', fn: s.fn, minIntervalMs: 1000, burstRuns: 2, maxIntervalMs: 60_000 });
    r.start(); // token 1 of 2
    await vi.advanceTimersByTimeAsync(0);
    expect(s.runs).toBe(1);
    r.run(); // token 2: at once
    await vi.advanceTimersByTimeAsync(0);
    expect(s.runs).toBe(2);
    r.run(); // the bucket is empty: the next token comes 1000 ms after the first was taken
    await vi.advanceTimersByTimeAsync(990);
    expect(s.runs).toBe(2);
    await vi.advanceTimersByTimeAsync(10);
    expect(s.runs).toBe(3);
    r.run(); // and the one after that another 1000 ms on: the average rate stays one per interval
    await vi.advanceTimersByTimeAsync(999);
    expect(s.runs).toBe(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(s.runs).toBe(4);
    // A quiet spell of two intervals fills the bucket again: two runs at once.
    await vi.advanceTimersByTimeAsync(2000);
    r.run();
    await vi.advanceTimersByTimeAsync(0);
    r.run();
    await vi.advanceTimersByTimeAsync(0);
    expect(s.runs).toBe(6);
    r.run();
    await vi.advanceTimersByTimeAsync(500);
    expect(s.runs).toBe(6);
    await r.stop();
  });

  it('refuses a burstRuns that is not a positive integer', () => {
    expect(() => new BoundedFrequencyRunner({ name: 't', fn: async () => undefined, burstRuns: 0, maxIntervalMs: 1000 })).toThrow(/burstRuns must be an integer >= 1/);
  });

  it('retries a failed run with a doubling backoff capped at maxIntervalMs, and reports each failure', async () => {
    const s = syncFn();
    s.fail = 4;
    const errors: number[] = [];
    const r = new BoundedFrequencyRunner({ name: 't', fn: s.fn, retryMs: 100, maxIntervalMs: 300, onError: (_e, ms) => errors.push(ms) });
    r.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(errors).toEqual([100]);
    await vi.advanceTimersByTimeAsync(100);
    expect(errors).toEqual([100, 200]);
    await vi.advanceTimersByTimeAsync(200);
    expect(errors).toEqual([100, 200, 300]);
    await vi.advanceTimersByTimeAsync(300);
    expect(errors).toEqual([100, 200, 300, 300]);
    await vi.advanceTimersByTimeAsync(300);
    expect(s.runs).toBe(5);
    expect(errors).toHaveLength(4);
    await r.stop();
  });

  it('stop() waits for the run in progress', async () => {
    const s = syncFn();
    s.hold = { release: () => undefined };
    const r = new BoundedFrequencyRunner({ name: 't', fn: s.fn, maxIntervalMs: 1000 });
    r.start();
    await vi.advanceTimersByTimeAsync(0);
    let stopped = false;
    const p = r.stop().then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(10);
    expect(stopped).toBe(false);
    s.hold.release();
    await p;
    expect(stopped).toBe(true);
  });
});
