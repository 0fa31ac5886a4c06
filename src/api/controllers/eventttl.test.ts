/**
 * Event TTL over a real Registry (SQLite store, watch cache), with one injected clock for
 * both the registry (creationTimestamp) and the controller: an Event goes once its last
 * occurrence is older than the TTL, not before; counting it again restarts the time; an
 * Event stamped in the past by a recorder with a slow clock still lives a TTL after it was
 * stored; a delete decided on a stale copy never removes a newer occurrence.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { testClock, testRegistry } from './testing.js';
import { eventually } from '../../testing/eventually.js';
import type { CoreEvent } from '../../client/types.js';
import { silentLogger } from '../../util/log.js';
import { DEFAULT_EVENT_TTL_MS } from '../options.js';
import { now } from '../registry/objects.js';
import { Registry } from '../registry/registry.js';
import { ApiStatusError } from '../server/status.js';
import { EventTTLController, lastOccurrence } from './eventttl.js';
import type { EventTTLOptions } from './eventttl.js';

const MERGE = 'application/merge-patch+json';
const MIN = 60_000;
const TTL = 10 * MIN;

interface Cluster {
  registry: Registry;
  clock: { now: number; advance(ms: number): void };
}

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(): Promise<Cluster> {
  const clock = testClock();
  const registry = await testRegistry(cleanups, { label: 'evttl', clock });
  return { registry, clock };
}

/** The controller, with a period long enough that only the test's collect() calls run (unless given). */
async function controller(c: Cluster, opts: EventTTLOptions = {}): Promise<EventTTLController> {
  const ctl = new EventTTLController(c.registry, silentLogger(), { ttlMs: TTL, periodMs: 3_600_000, clock: () => c.clock.now, ...opts });
  await ctl.start();
  cleanups.push(() => ctl.stop());
  return ctl;
}

async function record(c: Cluster, name: string, o: { namespace?: string; lastTimestamp?: string } = {}): Promise<void> {
  const at = now(() => c.clock.now);
  await c.registry.create('events', o.namespace ?? 'default', {
    metadata: { name },
    involvedObject: { kind: 'Node', name: 'n1' },
    reason: 'NotOnLink',
    message: 'node n9 is not on-link',
    type: 'Warning',
    count: 1,
    firstTimestamp: o.lastTimestamp ?? at,
    lastTimestamp: o.lastTimestamp ?? at,
  });
}

async function exists(c: Cluster, name: string, namespace = 'default'): Promise<boolean> {
  try {
    await c.registry.get('events', namespace, name);
    return true;
  } catch (e) {
    if (e instanceof ApiStatusError && e.reason === 'NotFound') return false;
    throw e;
  }
}

describe('event TTL', () => {
  it('keeps an Event until its last occurrence is a TTL old, then deletes it', async () => {
    const c = await start();
    await record(c, 'n1.a');
    const ctl = await controller(c);
    c.clock.advance(TTL - 1000);
    expect(await ctl.collect()).toBe(0);
    expect(await exists(c, 'n1.a')).toBe(true);
    c.clock.advance(1000);
    expect(await ctl.collect()).toBe(1);
    expect(await exists(c, 'n1.a')).toBe(false);
    // Gone from the store; the informer's copy going later is not an error.
    expect(await ctl.collect()).toBe(0);
  });

  it('an Event counted again lives a TTL after the new lastTimestamp; a stale delete cannot remove it', async () => {
    const c = await start();
    await record(c, 'n1.b');
    const ctl = await controller(c);
    c.clock.advance(TTL - MIN);
    await c.registry.patch('events', 'default', 'n1.b', { count: 2, lastTimestamp: now(() => c.clock.now) }, MERGE);
    // Past the first occurrence's TTL. Whether or not the informer has the new count yet,
    // the Event stays: on the new copy it is not expired, on the old one the delete's
    // resourceVersion precondition fails.
    c.clock.advance(2 * MIN);
    expect(await ctl.collect()).toBe(0);
    expect(await exists(c, 'n1.b')).toBe(true);
    c.clock.advance(TTL);
    await eventually(async () => expect(await ctl.collect()).toBe(1));
    expect(await exists(c, 'n1.b')).toBe(false);
  });

  it('an Event stamped in the past (a recorder with a slow clock) still lives a TTL after it was stored', async () => {
    const c = await start();
    await record(c, 'n1.c', { lastTimestamp: now(() => c.clock.now - 5 * TTL) });
    const ctl = await controller(c);
    expect(await ctl.collect()).toBe(0);
    c.clock.advance(TTL);
    expect(await ctl.collect()).toBe(1);
  });

  it('collects in every namespace, only what expired', async () => {
    const c = await start();
    await c.registry.create('namespaces', undefined, { metadata: { name: 'team' } });
    await record(c, 'old.1');
    await c.registry.create('events', 'team', { metadata: { name: 'old.2' }, involvedObject: { kind: 'Pod', namespace: 'team', name: 'p' }, type: 'Normal', reason: 'Started' });
    c.clock.advance(TTL);
    await record(c, 'new.1');
    const ctl = await controller(c);
    expect(await ctl.collect()).toBe(2);
    expect([await exists(c, 'old.1'), await exists(c, 'old.2', 'team'), await exists(c, 'new.1')]).toEqual([false, false, true]);
  });

  it('runs by itself every period', async () => {
    const c = await start();
    await record(c, 'n1.d');
    await controller(c, { periodMs: 20 });
    c.clock.advance(TTL);
    await eventually(async () => expect(await exists(c, 'n1.d')).toBe(false));
  });

  it('defaults to kube-apiserver\'s --event-ttl of one hour', async () => {
    expect(DEFAULT_EVENT_TTL_MS).toBe(60 * MIN);
    const c = await start();
    await record(c, 'n1.e');
    const ctl = await controller(c, { ttlMs: undefined });
    c.clock.advance(59 * MIN);
    expect(await ctl.collect()).toBe(0);
    c.clock.advance(MIN);
    expect(await ctl.collect()).toBe(1);
  });

  it('refuses a TTL that is not positive', () => {
    expect(() => new EventTTLController({} as Registry, silentLogger(), { ttlMs: 0 })).toThrow(/event TTL must be positive/);
  });
});

describe('lastOccurrence', () => {
  const base: CoreEvent = { metadata: { creationTimestamp: '2031-05-01T12:00:00Z' }, involvedObject: { kind: 'Node', name: 'n1' } };
  it.each([
    ['creationTimestamp alone', base, '2031-05-01T12:00:00Z'],
    ['a later lastTimestamp', { ...base, lastTimestamp: '2031-05-01T12:30:00Z' }, '2031-05-01T12:30:00Z'],
    ['an earlier lastTimestamp: the creation wins', { ...base, lastTimestamp: '2031-05-01T11:00:00Z' }, '2031-05-01T12:00:00Z'],
    ['series.lastObservedTime', { ...base, lastTimestamp: '2031-05-01T12:10:00Z', series: { count: 3, lastObservedTime: '2031-05-01T12:20:00.500000Z' } }, '2031-05-01T12:20:00.500Z'],
    ['eventTime', { ...base, eventTime: '2031-05-01T12:05:00.000000Z' }, '2031-05-01T12:05:00Z'],
  ])('%s', (_name, ev, want) => {
    expect(lastOccurrence(ev)).toBe(Date.parse(want));
  });

  it('is NaN without any parseable time', () => {
    expect(lastOccurrence({ metadata: {}, involvedObject: {} })).toBeNaN();
  });
});
