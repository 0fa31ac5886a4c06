/**
 * A real Registry for controller tests (test-only): a SQLite store in a temp directory, its
 * watch cache, the ClusterIP and NodePort allocators, and an injectable clock; everything
 * it opens is pushed onto `cleanups` (run them in afterEach, last first).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cidr } from '../../util/ipnet.js';
import { ClusterIPAllocator, PortAllocator } from '../registry/allocators.js';
import { Registry } from '../registry/registry.js';
import { WatchCache } from '../registry/watchcache.js';
import { SqliteStore } from '../store/sqlite.js';

export interface TestClock {
  now: number;
  advance(ms: number): void;
}

export type Cleanups = (() => Promise<void> | void)[];

/** A clock starting at a fixed instant, moved only by the test. */
export function testClock(start = '2031-05-01T12:00:00Z'): TestClock {
  return {
    now: Date.parse(start),
    advance(ms: number) {
      this.now += ms;
    },
  };
}

export async function testRegistry(cleanups: Cleanups, o: { label: string; dualStack?: boolean; clock?: TestClock }): Promise<Registry> {
  const dir = mkdtempSync(join(tmpdir(), `podnet-${o.label}-`));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const store = SqliteStore.open(dir);
  const watchCache = new WatchCache(store);
  await watchCache.start();
  cleanups.push(async () => {
    watchCache.stop();
    await store.close();
  });
  const clusterIPs: Partial<Record<4 | 6, ClusterIPAllocator>> = { 4: new ClusterIPAllocator(store, Cidr.parse('10.96.0.0/12')) };
  if (o.dualStack) clusterIPs[6] = new ClusterIPAllocator(store, Cidr.parse('fd00:10:96::/112'));
  const clock = o.clock;
  const registry = new Registry({ store, watchCache, ...(clock ? { clock: () => clock.now } : {}), network: { clusterIPs, primary: 4, nodePorts: new PortAllocator(store, { min: 30000, max: 32767 }) } });
  await registry.bootstrap();
  return registry;
}
