/**
 * Model-based property test: random sequences of allocate / concurrent allocate /
 * release / gc / reopen against a FileStore (compacting often), checked against a plain
 * model: never two owners with one address, idempotent per owner, round-robin order,
 * exhaustion exactly when the model is full, and reopen (after compactions) loses nothing.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isPodnetError } from '../util/errors.js';
import { IpamAllocator } from './allocator.js';
import type { Allocation } from './allocator.js';
import { FileStore } from './filestore.js';
import { TempDirs } from './testdata/helpers.js';

const temp = new TempDirs();
afterAll(() => temp.cleanup());

const SUBNETS = ['10.244.1.0/29', 'fd00::/125'];
/** Usable offsets: IPv4 .2–.6 (no broadcast), IPv6 ::2–::7. */
const RINGS = [
  [2, 3, 4, 5, 6].map((o) => `10.244.1.${o}`),
  [2, 3, 4, 5, 6, 7].map((o) => `fd00::${o}`),
];
const CAPACITY = 5;
const OWNERS = 8;

type Action =
  | { kind: 'alloc'; owners: number[] } // one call per entry, all concurrent
  | { kind: 'release'; owners: number[] }
  | { kind: 'gc'; dead: number }
  | { kind: 'reopen' };

const owner = fc.integer({ min: 0, max: OWNERS - 1 });
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 5, arbitrary: fc.array(owner, { minLength: 1, maxLength: 4 }).map((owners) => ({ kind: 'alloc' as const, owners })) },
  { weight: 3, arbitrary: fc.array(owner, { minLength: 1, maxLength: 3 }).map((owners) => ({ kind: 'release' as const, owners })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }).map((dead) => ({ kind: 'gc' as const, dead })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

class Model {
  readonly held = new Map<string, string[]>();
  private readonly cursor: (number | undefined)[] = [undefined, undefined];

  /** What allocate(id) must return, advancing the model; undefined when exhausted. */
  allocate(id: string): string[] | undefined {
    const had = this.held.get(id);
    if (had) return had;
    if (this.held.size >= CAPACITY) return undefined;
    const taken = new Set([...this.held.values()].flat());
    const ips = RINGS.map((ring, f) => {
      const start = this.cursor[f] === undefined ? 0 : (this.cursor[f]! + 1) % ring.length;
      for (let k = 0; k < ring.length; k++) {
        const i = (start + k) % ring.length;
        if (!taken.has(ring[i]!)) {
          this.cursor[f] = i;
          return ring[i]!;
        }
      }
      throw new Error('model: no free address');
    });
    this.held.set(id, ips);
    return ips;
  }
}

const ipsOf = (a: Allocation) => a.addresses.map((x) => x.ip);

async function check(actions: Action[]): Promise<void> {
  const dir = temp.make('podnet-ipam-prop-');
  const opts = { compactMinRecords: 3, compactRatio: 1.5 };
  let store = await FileStore.open(dir, opts);
  let ipam = await IpamAllocator.open(store, { subnets: SUBNETS });
  const model = new Model();
  const id = (n: number) => `owner-${n}`;
  try {
    for (const a of actions) {
      switch (a.kind) {
        case 'alloc': {
          const results = await Promise.allSettled(a.owners.map((n) => ipam.allocate({ id: id(n), name: `pod-${n}` })));
          results.forEach((r, i) => {
            const want = model.allocate(id(a.owners[i]!));
            if (want === undefined) {
              expect(r.status).toBe('rejected');
              expect(isPodnetError((r as PromiseRejectedResult).reason, 'PODNET_IPAM_EXHAUSTED')).toBe(true);
            } else {
              expect(r.status).toBe('fulfilled');
              expect(ipsOf((r as PromiseFulfilledResult<Allocation>).value)).toEqual(want);
            }
          });
          break;
        }
        case 'release': {
          const want = new Map(a.owners.map((n) => [id(n), model.held.get(id(n))]));
          const results = await Promise.all(a.owners.map((n) => ipam.release(id(n))));
          // A repeated release in one batch resolves like the first.
          results.forEach((r, i) => expect(r ? ipsOf(r) : undefined).toEqual(want.get(id(a.owners[i]!))));
          for (const k of want.keys()) model.held.delete(k);
          break;
        }
        case 'gc': {
          const dead = (o: { id: string }) => ((a.dead >> Number(o.id.split('-')[1])) & 1) === 1;
          const released = await ipam.gc((o) => !dead(o));
          const want = [...model.held.keys()].filter((k) => dead({ id: k }));
          expect(released.map((r) => r.owner.id).sort()).toEqual(want.sort());
          for (const k of want) model.held.delete(k);
          break;
        }
        case 'reopen':
          await store.close();
          store = await FileStore.open(dir, opts);
          ipam = await IpamAllocator.open(store, { subnets: SUBNETS });
          break;
      }
      // Invariants after every step.
      const live = ipam.list();
      expect(new Map(live.map((l) => [l.owner.id, ipsOf(l)]))).toEqual(model.held);
      const all = live.flatMap(ipsOf);
      expect(new Set(all).size).toBe(all.length);
    }
    // Whatever happened, a final reopen sees the same state.
    await store.close();
    store = await FileStore.open(dir);
    expect(new Map([...store.state().allocations].map(([k, v]) => [k, v.ips]))).toEqual(model.held);
  } finally {
    await store.close();
  }
}

describe('IPAM property: allocator + FileStore against a model', () => {
  it('random allocate / release / gc / reopen sequences', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 40 }), check),
      { numRuns: 60, seed: 20240601 },
    );
  }, 120_000);
});
