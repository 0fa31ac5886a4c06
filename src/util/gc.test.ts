import { describe, expect, it } from 'vitest';
import { collect, fullGc } from './gc.js';

describe('collect', () => {
  it('a full collection frees garbage and says how much', () => {
    expect(fullGc).toBeTypeOf('function');
    let garbage: { i: number; s: string }[] | undefined = Array.from({ length: 300_000 }, (_, i) => ({ i, s: `x${i}` }));
    expect(garbage.length).toBe(300_000);
    garbage = undefined;
    const r = collect()!;
    expect(r.ms).toBeGreaterThanOrEqual(0);
    // ~20 MB of objects were garbage.
    expect(r.beforeMB - r.afterMB).toBeGreaterThan(10);
  });
});
