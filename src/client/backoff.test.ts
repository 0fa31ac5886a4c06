import { describe, expect, it } from 'vitest';
import { Backoff, realClock } from './backoff.js';

describe('Backoff', () => {
  it('doubles from base up to the cap', () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0 });
    expect(Array.from({ length: 7 }, () => b.next())).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
    expect(b.attempts).toBe(7);
    b.reset();
    expect(b.next()).toBe(100);
  });

  it('removes up to `jitter` of each delay at random, never exceeding the cap', () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, jitter: 0.5, random: () => 0.999 });
    expect(Array.from({ length: 6 }, () => b.next())).toEqual([50, 100, 200, 400, 500, 500]);
    const r = new Backoff({ baseMs: 100, maxMs: 400, factor: 3, jitter: 1 });
    for (let i = 0; i < 50; i++) {
      const d = r.next();
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(400);
    }
  });
});

describe('realClock', () => {
  it('sleep wakes early when aborted and never rejects', async () => {
    const ac = new AbortController();
    const t0 = realClock.now();
    const p = realClock.sleep(60_000, ac.signal);
    ac.abort();
    await p;
    expect(realClock.now() - t0).toBeLessThan(1000);
    await realClock.sleep(10, ac.signal);
  });
});
