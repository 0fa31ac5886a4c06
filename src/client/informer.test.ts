import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from './backoff.js';
import { isGone } from './errors.js';
import { BY_NAMESPACE, Informer, objectKey } from './informer.js';
import type { InformerOptions } from './informer.js';
import { RESOURCES } from './resources.js';
import { KubeClient } from './rest.js';
import { FakeApiServer } from './testing/fake-apiserver.js';
import type { RecordedRequest } from './testing/fake-apiserver.js';
import type { Pod } from './types.js';

/** Time that moves only when the test says so; records every sleep asked for. */
class FakeClock implements Clock {
  t = 0;
  readonly sleeps: number[] = [];
  #timers: { at: number; wake: () => void }[] = [];

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = { at: this.t + ms, wake: resolve };
      this.#timers.push(timer);
      signal.addEventListener(
        'abort',
        () => {
          this.#timers = this.#timers.filter((x) => x !== timer);
          resolve();
        },
        { once: true },
      );
    });
  }

  get pending(): number {
    return this.#timers.length;
  }

  /** Moves time forward and wakes every sleeper due by then. */
  advance(ms: number): void {
    this.t += ms;
    const due = this.#timers.filter((x) => x.at <= this.t).sort((a, b) => a.at - b.at);
    this.#timers = this.#timers.filter((x) => x.at > this.t);
    for (const x of due) x.wake();
  }

  /** Waits for at least `n` sleepers (real time, bounded). */
  async waitForSleepers(n = 1): Promise<void> {
    for (let i = 0; i < 2000 && this.#timers.length < n; i++) await new Promise((r) => setTimeout(r, 1));
    if (this.#timers.length < n) throw new Error(`fake clock: expected ${n} sleepers, have ${this.#timers.length}`);
  }

  /** Waits for a sleeper and wakes the earliest one. */
  async tick(): Promise<number> {
    await this.waitForSleepers(1);
    const next = Math.min(...this.#timers.map((x) => x.at));
    const ms = next - this.t;
    this.advance(ms);
    return ms;
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const pod = (name: string, ns = 'default', extra: Partial<Pod['metadata']> = {}, nodeName = 'node-a'): Pod => ({
  metadata: { name, namespace: ns, ...extra },
  spec: { nodeName, containers: [{ name: 'c' }] },
});

interface Env {
  s: FakeApiServer;
  client: KubeClient;
  informer: Informer<Pod>;
  events: string[];
  errors: string[];
  clock: FakeClock;
  /** Starts run(); stopped (and awaited) after the test. */
  start(): Promise<void>;
  ac: AbortController;
}

async function setup(opts: Partial<InformerOptions<Pod>> & { server?: Parameters<typeof FakeApiServer.start>[0]; seed?: Pod[] } = {}): Promise<Env> {
  const s = await FakeApiServer.start(opts.server ?? {});
  const client = new KubeClient(s.config());
  const clock = new FakeClock();
  for (const p of opts.seed ?? []) s.put(RESOURCES.pods, p);
  const errors: string[] = [];
  const informer = new Informer<Pod>({
    source: client.resource(RESOURCES.pods),
    clock,
    random: () => 0,
    minWatchMs: 0,
    backoff: { baseMs: 100, maxMs: 1000 },
    onError: (e, info) => errors.push(`${info.phase}:${info.delayMs}:${isGone(e) ? 'gone' : e instanceof Error ? e.message : String(e)}`),
    ...opts,
  });
  const events: string[] = [];
  informer.onAdd((o) => events.push(`add ${objectKey(o)}@${o.metadata.resourceVersion}`));
  informer.onUpdate((a, b) => events.push(`update ${objectKey(b)} ${a.metadata.resourceVersion}->${b.metadata.resourceVersion}`));
  informer.onDelete((o, i) => events.push(`delete ${objectKey(o)}@${o.metadata.resourceVersion}${i.finalStateUnknown ? ' (final state unknown)' : ''}`));
  const ac = new AbortController();
  let running: Promise<void> | undefined;
  cleanups.push(async () => {
    ac.abort();
    await running;
    await client.close();
    await s.close();
  });
  return {
    s,
    client,
    informer,
    events,
    errors,
    clock,
    ac,
    start: async () => {
      running = informer.run(ac.signal);
      expect(await informer.waitForSync()).toBe(true);
    },
  };
}

const isList = (r: RecordedRequest): boolean => r.method === 'GET' && r.query.get('watch') !== 'true';
const lists = (s: FakeApiServer): RecordedRequest[] => s.requests.filter(isList);
const watchRVs = (s: FakeApiServer): (string | null)[] => s.watchRequests().map((r) => r.query.get('resourceVersion'));

describe('Informer: initial sync and cache', () => {
  it('starts nothing in the constructor; lists every page, then watches from the list version', async () => {
    const seed = ['a', 'b', 'c', 'd', 'e'].map((n, i) => pod(n, i % 2 ? 'odd' : 'default'));
    const env = await setup({ seed, pageSize: 2 });
    expect(env.s.requests).toHaveLength(0);
    expect(env.informer.hasSynced()).toBe(false);
    await env.start();
    expect(env.events).toEqual(['add default/a@100', 'add default/c@102', 'add default/e@104', 'add odd/b@101', 'add odd/d@103']);
    expect(lists(env.s).map((r) => r.query.get('limit'))).toEqual(['2', '2', '2']);
    await env.s.waitFor(() => env.s.openWatches === 1);
    const w = env.s.watchRequests()[0];
    expect(w?.query.get('resourceVersion')).toBe('104');
    expect(w?.query.get('allowWatchBookmarks')).toBe('true');
    expect(w?.query.get('timeoutSeconds')).toBe('300');
    expect(env.informer.resourceVersion).toBe('104');
    expect(env.informer.size).toBe(5);
    expect(env.informer.get('odd/b')?.metadata.name).toBe('b');
    expect(env.informer.getByName('default', 'e')?.kind).toBe('Pod');
    expect(env.informer.keys().sort()).toEqual(['default/a', 'default/c', 'default/e', 'odd/b', 'odd/d']);
    expect(env.informer.byIndex(BY_NAMESPACE, 'odd').map((p) => p.metadata.name).sort()).toEqual(['b', 'd']);
  });

  it('maintains custom indexes through adds, updates and deletes (also when added after sync)', async () => {
    const env = await setup({ seed: [pod('a', 'default', {}, 'n1'), pod('b', 'default', {}, 'n2')] });
    env.informer.addIndexer('byNode', (p) => p.spec?.nodeName);
    await env.start();
    env.informer.addIndexer('byLabel', (p) => Object.entries(p.metadata.labels ?? {}).map(([k, v]) => `${k}=${v}`));
    expect(() => env.informer.addIndexer('byNode', () => undefined)).toThrow(/exists/);
    expect(() => env.informer.byIndex('nope', 'x')).toThrow(/no index/);
    await env.s.waitFor(() => env.s.openWatches === 1);
    const a = env.s.object<Pod>(RESOURCES.pods, 'default', 'a');
    env.s.put(RESOURCES.pods, { ...a, metadata: { ...a?.metadata, labels: { app: 'web' } }, spec: { nodeName: 'n2', containers: [] } });
    env.s.remove(RESOURCES.pods, 'default', 'b');
    await env.s.waitFor(() => env.events.length === 4);
    expect(env.informer.byIndex('byNode', 'n1')).toEqual([]);
    expect(env.informer.byIndex('byNode', 'n2').map((p) => p.metadata.name)).toEqual(['a']);
    expect(env.informer.byIndex('byLabel', 'app=web').map((p) => p.metadata.name)).toEqual(['a']);
    expect(env.informer.byIndex(BY_NAMESPACE, 'default')).toHaveLength(1);
  });

  it('waitForSync resolves false when its signal fires first or the informer stops unsynced', async () => {
    const env = await setup();
    env.s.fail({ match: isList, code: 503, times: 100 });
    const ac = new AbortController();
    const w = env.informer.waitForSync(ac.signal);
    ac.abort();
    expect(await w).toBe(false);
    const run = env.informer.run(env.ac.signal);
    const w2 = env.informer.waitForSync();
    await env.clock.waitForSleepers(1);
    env.ac.abort();
    await run;
    expect(await w2).toBe(false);
    expect(await env.informer.waitForSync()).toBe(false);
    await expect(env.informer.run(new AbortController().signal)).rejects.toThrow(/once/);
  });
});

describe('Informer: watch events', () => {
  it('calls onAdd, onUpdate(old, new) and onDelete once each, in order', async () => {
    const env = await setup({ seed: [pod('a')] });
    await env.start();
    await env.s.waitFor(() => env.s.openWatches === 1);
    const a = env.s.object<Pod>(RESOURCES.pods, 'default', 'a');
    env.s.put(RESOURCES.pods, pod('b'));
    env.s.put(RESOURCES.pods, { ...a, metadata: { ...a?.metadata, labels: { v: '2' } } } as Pod);
    env.s.remove(RESOURCES.pods, 'default', 'b');
    await env.s.waitFor(() => env.events.length === 4);
    expect(env.events).toEqual(['add default/a@100', 'add default/b@101', 'update default/a 100->102', 'delete default/b@103']);
    expect(env.informer.get('default/a')?.metadata.labels).toEqual({ v: '2' });
    expect(env.informer.get('default/b')).toBeUndefined();
    expect(env.informer.resourceVersion).toBe('103');
  });

  it('a throwing handler is reported and does not stop other handlers or the informer', async () => {
    const env = await setup({ seed: [pod('a')] });
    env.informer.onAdd(() => {
      throw new Error('handler bug');
    });
    const unsubscribe = env.informer.onAdd(() => env.events.push('second handler'));
    await env.start();
    unsubscribe();
    env.s.put(RESOURCES.pods, pod('b'));
    await env.s.waitFor(() => env.events.length === 3);
    expect(env.events).toEqual(['add default/a@100', 'second handler', 'add default/b@101']);
    expect(env.errors).toEqual(['handler:0:handler bug', 'handler:0:handler bug']);
  });

  it('resumes after a disconnect from the last resourceVersion seen, without relisting or repeating', async () => {
    const env = await setup({ seed: [pod('a')] });
    await env.start();
    await env.s.waitFor(() => env.s.openWatches === 1);
    env.s.put(RESOURCES.pods, pod('b'));
    await env.s.waitFor(() => env.events.length === 2);
    env.s.dropWatches();
    // Changed while the informer is between two watches: replayed by the next watch.
    env.s.put(RESOURCES.pods, pod('c'));
    await env.s.waitFor(() => env.s.openWatches === 1 && env.events.length === 3);
    env.s.put(RESOURCES.pods, pod('d'));
    await env.s.waitFor(() => env.events.length === 4);
    expect(watchRVs(env.s)).toEqual(['100', '101']);
    expect(lists(env.s)).toHaveLength(1);
    expect(env.events).toEqual(['add default/a@100', 'add default/b@101', 'add default/c@102', 'add default/d@103']);
  });

  it('a stream cut in the middle of an event resumes from the last whole event', async () => {
    const env = await setup({ seed: [pod('a')] });
    let cut = true;
    env.s.intercept((req, res) => {
      if (req.query.get('watch') !== 'true' || !cut) return false;
      cut = false;
      res.writeHead(200, { 'content-type': 'application/json' });
      const ev = JSON.stringify({ type: 'ADDED', object: { ...pod('x'), metadata: { name: 'x', namespace: 'default', resourceVersion: '150' } } });
      res.end(ev.slice(0, 40));
      return true;
    });
    await env.start();
    await env.s.waitFor(() => env.s.watchRequests().length === 2 && env.s.openWatches === 1);
    expect(watchRVs(env.s)).toEqual(['100', '100']);
    expect(env.events).toEqual(['add default/a@100']);
  });

  it('bookmarks advance the resourceVersion used to resume', async () => {
    const env = await setup({ seed: [pod('a')], namespace: 'default' });
    await env.start();
    await env.s.waitFor(() => env.s.openWatches === 1);
    // Changes the informer does not see (another namespace) move the server on.
    for (const n of ['x', 'y', 'z']) env.s.put(RESOURCES.pods, pod(n, 'elsewhere'));
    expect(env.informer.resourceVersion).toBe('100');
    env.s.bookmark();
    await env.s.waitFor(() => env.informer.resourceVersion === '103');
    env.s.dropWatches();
    await env.s.waitFor(() => env.s.watchRequests().length === 2);
    expect(watchRVs(env.s)).toEqual(['100', '103']);
    expect(env.s.watchRequests()[1]?.path).toBe('/api/v1/namespaces/default/pods');
    expect(env.events).toEqual(['add default/a@100']);
  });
});

describe('Informer: 410 and relist', () => {
  it.each(['event', 'http'] as const)('relists after a 410 (%s) and delivers exactly the difference', async (goneAs) => {
    const env = await setup({ seed: [pod('a'), pod('b'), pod('c'), pod('e')], server: { goneAs } });
    await env.start();
    await env.s.waitFor(() => env.s.openWatches === 1);
    // Disconnect and keep the informer away (one failed watch → a backoff sleep on the fake clock).
    env.s.fail({ match: (r) => r.query.get('watch') === 'true', code: 503, times: 1 });
    env.s.dropWatches();
    await env.clock.waitForSleepers(1);
    // Meanwhile: a deleted, b changed, c untouched, d created — and history compacted.
    env.s.remove(RESOURCES.pods, 'default', 'a');
    const b = env.s.object<Pod>(RESOURCES.pods, 'default', 'b');
    env.s.put(RESOURCES.pods, { ...b, metadata: { ...b?.metadata, labels: { v: '2' } } } as Pod);
    env.s.put(RESOURCES.pods, pod('d'));
    // e: deleted and created again under the same name (a new uid).
    env.s.remove(RESOURCES.pods, 'default', 'e');
    env.s.put(RESOURCES.pods, pod('e'));
    env.s.compact();
    const before = env.events.length;
    env.clock.advance(100);
    await env.s.waitFor(() => lists(env.s).length === 2 && env.s.openWatches === 1, 'relist and re-watch');
    expect(env.events.slice(before)).toEqual([
      'delete default/a@100 (final state unknown)',
      'update default/b 101->105',
      'add default/d@106',
      'delete default/e@103 (final state unknown)',
      'add default/e@108',
    ]);
    expect(watchRVs(env.s)).toEqual(['103', '103', '103', '108']);
    expect(env.errors).toEqual(['watch:100:injected 503', 'watch:0:gone']);
    expect(env.informer.keys().sort()).toEqual(['default/b', 'default/c', 'default/d', 'default/e']);
    // And it carries on from the relist's version.
    env.s.put(RESOURCES.pods, pod('f'));
    await env.s.waitFor(() => env.events.length === before + 6);
    expect(env.events.at(-1)).toBe('add default/f@109');
  });

  it('an ERROR 410 in the middle of a stream relists at once', async () => {
    const env = await setup({ seed: [pod('a')] });
    await env.start();
    await env.s.waitFor(() => env.s.openWatches === 1);
    env.s.put(RESOURCES.pods, pod('b'));
    await env.s.waitFor(() => env.events.length === 2);
    env.s.watchError({ code: 410, reason: 'Expired', message: 'too old resource version' });
    await env.s.waitFor(() => lists(env.s).length === 2 && env.s.openWatches === 1);
    expect(env.events).toEqual(['add default/a@100', 'add default/b@101']);
    expect(env.clock.sleeps).toEqual([]);
  });
});

describe('Informer: backoff', () => {
  it('grows exponentially between failed lists, is capped, and resets after success', async () => {
    const env = await setup({ seed: [pod('a')] });
    env.s.fail({ match: isList, code: 503, message: 'apiserver starting', times: 6 });
    const run = env.informer.run(env.ac.signal);
    for (let i = 0; i < 6; i++) await env.clock.tick();
    expect(await env.informer.waitForSync()).toBe(true);
    expect(env.clock.sleeps).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(env.errors).toEqual(['list:100:apiserver starting', 'list:200:apiserver starting', 'list:400:apiserver starting', 'list:800:apiserver starting', 'list:1000:apiserver starting', 'list:1000:apiserver starting']);
    // A watch that delivered something resets the count: the next failure waits the base delay again.
    await env.s.waitFor(() => env.s.openWatches === 1);
    env.s.put(RESOURCES.pods, pod('b'));
    await env.s.waitFor(() => env.events.length === 2);
    env.s.fail({ match: (r) => r.query.get('watch') === 'true', code: 500, times: 1 });
    env.s.dropWatches();
    await env.clock.waitForSleepers(1);
    expect(env.clock.sleeps.at(-1)).toBe(100);
    env.clock.advance(100);
    await env.s.waitFor(() => env.s.openWatches === 1);
    env.ac.abort();
    await run;
  });

  it('applies jitter from the injected random source', async () => {
    const env = await setup({ random: () => 0.5, backoff: { baseMs: 100, maxMs: 1000, jitter: 0.5 } });
    env.s.fail({ match: isList, code: 500, times: 5 });
    void env.start();
    for (let i = 0; i < 5; i++) await env.clock.tick();
    await env.informer.waitForSync();
    expect(env.clock.sleeps).toEqual([75, 150, 300, 600, 750]);
    await env.s.waitFor(() => env.s.watchRequests().length === 1);
    expect(env.s.watchRequests()[0]?.query.get('timeoutSeconds')).toBe('450');
  });

  it('counts short watches that deliver nothing as failures', async () => {
    const env = await setup({ minWatchMs: 1000 });
    await env.start();
    for (let i = 0; i < 3; i++) {
      await env.s.waitFor(() => env.s.openWatches === 1);
      env.s.dropWatches();
      await env.clock.tick();
    }
    expect(env.clock.sleeps).toEqual([100, 200, 400]);
  });

  it('a 410 right after a relist backs off instead of looping', async () => {
    const env = await setup({ seed: [pod('a')], server: { goneAs: 'http' }, minWatchMs: 1000 });
    await env.start();
    await env.s.waitFor(() => env.s.openWatches === 1);
    env.s.put(RESOURCES.pods, pod('b'));
    await env.s.waitFor(() => env.events.length === 2);
    env.s.fail({ match: (r) => r.query.get('watch') === 'true', code: 410, reason: 'Expired', times: 3 });
    env.s.watchError({ code: 410, reason: 'Expired', message: 'too old resource version' });
    for (let i = 0; i < 3; i++) await env.clock.tick();
    await env.s.waitFor(() => env.s.openWatches === 1);
    // The 410 that ended a working watch: relist at once. Each 410 right after a relist: 200, 400, 800 ms.
    expect(env.clock.sleeps).toEqual([200, 400, 800]);
    expect(lists(env.s)).toHaveLength(5);
    expect(env.events).toEqual(['add default/a@100', 'add default/b@101']);
  });
});

describe('Informer: resync', () => {
  it('re-delivers every cached object as onUpdate(obj, obj) each period', async () => {
    const env = await setup({ seed: [pod('a'), pod('b')], resyncPeriodMs: 30_000 });
    const same: boolean[] = [];
    env.informer.onUpdate((o, n) => same.push(o === n));
    await env.start();
    await env.clock.waitForSleepers(1);
    env.clock.advance(30_000);
    await env.s.waitFor(() => env.events.length === 4);
    expect(env.events.slice(2)).toEqual(['update default/a 100->100', 'update default/b 101->101']);
    expect(same).toEqual([true, true]);
  });
});

describe('Informer: stop', () => {
  it('aborting the signal ends watch, timers and resync; run() resolves; nothing stays open', async () => {
    const handles = (): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
      return out;
    };
    const before = handles();
    const s = await FakeApiServer.start();
    s.put(RESOURCES.pods, pod('a'));
    const client = new KubeClient(s.config());
    const informer = new Informer<Pod>({ source: client.resource(RESOURCES.pods), resyncPeriodMs: 60_000 });
    const ac = new AbortController();
    const run = informer.run(ac.signal);
    expect(await informer.waitForSync()).toBe(true);
    await s.waitFor(() => s.openWatches === 1);
    expect(handles()['PipeWrap'] ?? 0).toBeGreaterThan(before['PipeWrap'] ?? 0); // the measure sees our sockets
    ac.abort();
    await run;
    await s.waitFor(() => s.openWatches === 0, 'the watch to close');

    // Also while sleeping in backoff (real clock, long delay).
    const failing = new Informer<Pod>({ source: client.resource(RESOURCES.pods), backoff: { baseMs: 60_000 } });
    s.fail({ match: isList, code: 500, times: 1 });
    const ac2 = new AbortController();
    const run2 = failing.run(ac2.signal);
    await s.waitFor(() => s.requests.filter(isList).length === 2);
    const t0 = Date.now();
    ac2.abort();
    await run2;
    expect(Date.now() - t0).toBeLessThan(1000);

    await client.close();
    await s.close();
    await new Promise((r) => setTimeout(r, 20));
    const after = handles();
    // Nothing of ours is left: no sockets, no timers (other tests' timers may have ended meanwhile).
    for (const kind of ['PipeWrap', 'TCPWrap', 'TLSWrap', 'Timeout']) expect({ kind, n: after[kind] ?? 0 }).toEqual({ kind, n: Math.min(after[kind] ?? 0, before[kind] ?? 0) });
  });
});
