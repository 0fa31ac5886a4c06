import { describe, expect, it } from 'vitest';
import { parseDuration } from './duration.js';

describe('parseDuration', () => {
  it('reads the forms Kubernetes flags take', () => {
    expect(['40s', '5m', '1h30m', '500ms', '2.5s', '0s', '0', '1m0.5s'].map((t) => parseDuration(t, '--x'))).toEqual([40_000, 300_000, 5_400_000, 500, 2500, 0, 0, 60_500]);
  });

  it('refuses anything else, naming the flag', () => {
    for (const t of ['', '5', '00', '1x', 's', '1s ', ' 1s', '-1s', '1s5']) expect(() => parseDuration(t, '--proxy-min-sync-period'), t).toThrow(/--proxy-min-sync-period .* is not a duration/);
  });
});
