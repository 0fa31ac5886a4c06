import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { storeContract } from './contract.js';
import { SqliteStore, keyRange } from './sqlite.js';
import type { SqliteStoreOptions } from './sqlite.js';
import { StoreError } from './types.js';
import type { KV, StoreEvent } from './types.js';

const dirs: string[] = [];
const stores: SqliteStore[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'podnet-sqlite-'));
  dirs.push(dir);
  return dir;
}

function open(dir: string, opts?: SqliteStoreOptions): SqliteStore {
  const s = SqliteStore.open(dir, opts);
  stores.push(s);
  return s;
}

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every event on `prefix` after `after`, until `n` have arrived. */
function watchAll(store: SqliteStore, prefix: string, after: number, n: number, ms = 10_000) {
  const events: StoreEvent[] = [];
  let error: StoreError | undefined;
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  const timer = setTimeout(resolve, ms);
  const h = store.watch(prefix, after, {
    onEvents(evs) {
      events.push(...evs);
      if (events.length >= n) resolve();
    },
    onError(e) {
      error = e;
      resolve();
    },
  });
  return {
    events,
    get error() {
      return error;
    },
    async wait() {
      await done;
      clearTimeout(timer);
      h.cancel();
      return events;
    },
  };
}

async function rejection(p: Promise<unknown>): Promise<StoreError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(StoreError);
    return e as StoreError;
  }
  throw new Error('expected a StoreError, the call succeeded');
}

describe('SqliteStore: the store contract', () => {
  for (const c of storeContract) {
    it(c.name, async () => {
      await c.run({ store: open(tempDir()) });
    }, 30_000);
  }
});

describe('SqliteStore', () => {
  it('keeps data, revisions and the compacted revision across close and reopen', async () => {
    const dir = tempDir();
    const s1 = open(dir);
    const a = await s1.create('/registry/p/a', '1');
    const a2 = await s1.update('/registry/p/a', '2', a.modRevision);
    const b = await s1.create('/registry/p/b', 'x');
    await s1.compact(b.modRevision);
    // The newest row is a tombstone; compacting past it deletes it, the revision must not go back.
    const del = await s1.delete('/registry/p/b');
    await s1.compact(del.modRevision);
    await s1.close();

    const s2 = open(dir);
    expect(await s2.currentRevision()).toBe(del.modRevision);
    expect(await s2.compactedRevision()).toBe(del.modRevision);
    expect(await s2.get('/registry/p/a')).toEqual(a2);
    expect(await s2.get('/registry/p/b')).toBeUndefined();
    expect((await rejection(s2.list('/registry/p/', { revision: a.modRevision }))).code).toBe('Compacted');
    const c = await s2.create('/registry/p/c', 'y');
    expect(c.modRevision).toBe(del.modRevision + 1);
    const recreated = await s2.create('/registry/p/b', 'again');
    expect(recreated.createRevision).toBe(c.modRevision + 1);
    expect((await s2.list('/registry/p/')).kvs.map((k) => [k.key, k.value])).toEqual([
      ['/registry/p/a', '2'],
      ['/registry/p/b', 'again'],
      ['/registry/p/c', 'y'],
    ]);
  });

  it('group commit: writes requested together share one transaction', async () => {
    const s = open(tempDir());
    const before = s.stats();
    const kvs = await Promise.all(Array.from({ length: 500 }, (_, i) => s.create(`/registry/g/${i}`, String(i))));
    const after = s.stats();
    expect(after.writes - before.writes).toBe(500);
    expect(after.commits - before.commits).toBeLessThanOrEqual(2);
    const revs = kvs.map((k) => k.modRevision);
    expect(new Set(revs).size).toBe(500);

    // A bounded batch: 250 writes with maxBatch 100 take three transactions.
    const small = open(tempDir(), { maxBatch: 100 });
    await Promise.all(Array.from({ length: 250 }, (_, i) => small.create(`/registry/g/${i}`, String(i))));
    expect(small.stats()).toEqual({ commits: 3, writes: 250 });
  });

  it('group commit: each write in a batch is validated against the ones before it', async () => {
    const s = open(tempDir());
    const base = await s.create('/registry/v/x', 'x0');
    const results = await Promise.allSettled([
      s.create('/registry/v/a', 'a1'),
      s.create('/registry/v/a', 'dup'),
      s.delete('/registry/v/a'),
      s.create('/registry/v/a', 'a2'),
      s.update('/registry/v/x', 'x1', base.modRevision),
      s.update('/registry/v/x', 'x2', base.modRevision),
      s.update('/registry/v/none', 'n', 1),
    ]);
    expect(s.stats().commits).toBe(2);
    const codes = results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as StoreError).code));
    expect(codes).toEqual(['ok', 'KeyExists', 'ok', 'ok', 'ok', 'Conflict', 'NotFound']);
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(ok.map((kv) => kv.modRevision)).toEqual([2, 3, 4, 5]);
    const conflict = (results[5] as PromiseRejectedResult).reason as StoreError;
    expect(conflict.current).toEqual({ key: '/registry/v/x', value: 'x1', createRevision: base.modRevision, modRevision: 5 });
    expect(await s.get('/registry/v/a')).toEqual({ key: '/registry/v/a', value: 'a2', createRevision: 4, modRevision: 4 });
  });

  it('prefixes: exact, in byte order, including characters above U+FFFF', async () => {
    const s = open(tempDir());
    const keys = ['/registry/u/\u{1F600}', '/registry/u/\uffff', '/registry/u/a', '/registry/u', '/registry/u0/z', '/registry/v/a', '/registry/u/\u{10FFFF}x'];
    for (const k of keys) await s.create(k, k);
    const listed = (await s.list('/registry/u/')).kvs.map((k) => k.key);
    expect(listed).toEqual(['/registry/u/a', '/registry/u/\uffff', '/registry/u/\u{1F600}', '/registry/u/\u{10FFFF}x']);
    expect(await s.count('/registry/u/')).toBe(4);
    expect(await s.count('/registry/u/\u{10FFFF}')).toBe(1);
    expect(await s.count('')).toBe(keys.length);
    // Pages continue in the same (byte) order.
    const p1 = await s.list('/registry/u/', { limit: 2 });
    const p2 = await s.list('/registry/u/', { limit: 2, startAfter: p1.kvs[1]!.key, revision: p1.revision });
    expect([...p1.kvs, ...p2.kvs].map((k) => k.key)).toEqual(listed);
    expect(p2.more).toBe(false);

    expect(keyRange('/a/')).toEqual({ lo: '/a/', hi: '/a0' });
    expect(keyRange('x\ud7ff')).toEqual({ lo: 'x\ud7ff', hi: 'x\ue000' });
    expect(keyRange('x\u{10FFFF}')).toEqual({ lo: 'x\u{10FFFF}', hi: 'y' });
    expect(keyRange('')).toEqual({ lo: '', hi: undefined });
  });

  it('owns its file: a second open fails while the first is open', async () => {
    const dir = tempDir();
    const s = open(dir);
    await s.create('/registry/a', '1');
    const err = (() => {
      try {
        SqliteStore.open(dir, { lockTimeoutMs: 0 });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('Unavailable');
    await s.close();
    const again = open(dir, { lockTimeoutMs: 0 });
    expect((await again.get('/registry/a'))?.value).toBe('1');
  });

  it('history at every revision above the compacted one survives a many-step compaction', async () => {
    const s = open(tempDir());
    // A deterministic mix of creates, updates and deletes on 40 keys.
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const live = new Map<string, KV>();
    const snapshots = new Map<number, string>();
    const snapshot = () => JSON.stringify([...live.values()].sort((x, y) => (x.key < y.key ? -1 : 1)).map((k) => [k.key, k.value, k.modRevision]));
    for (let i = 0; i < 2600; i++) {
      const key = `/registry/h/${String(rand(40)).padStart(2, '0')}`;
      const cur = live.get(key);
      let kv: KV;
      if (!cur) kv = await s.create(key, `c${i}`);
      else if (rand(4) === 0) {
        await s.delete(key, cur.modRevision);
        live.delete(key);
        snapshots.set(await s.currentRevision(), snapshot());
        continue;
      } else kv = await s.update(key, `u${i}`, cur.modRevision);
      live.set(key, kv);
      snapshots.set(kv.modRevision, snapshot());
    }
    const target = 2100;
    await s.compact(target);
    expect(await s.compactedRevision()).toBe(target);
    for (const [rev, want] of snapshots) {
      if (rev < target) continue;
      const got = await s.list('/registry/h/', { revision: rev });
      expect(JSON.stringify(got.kvs.map((k) => [k.key, k.value, k.modRevision])), `at revision ${rev}`).toBe(want);
    }
    // A watch from the compacted revision replays every later event, with previous values.
    const end = await s.currentRevision();
    const w = watchAll(s, '/registry/h/', target, end - target);
    const evs = await w.wait();
    expect(evs.map((e) => e.revision)).toEqual(Array.from({ length: end - target }, (_, i) => target + 1 + i));
    for (const e of evs) if (e.type !== 'create') expect(e.prevValue, `prevValue at ${e.revision}`).toBeDefined();
    expect((await rejection(s.list('/registry/h/', { revision: target - 1 }))).code).toBe('Compacted');
  }, 30_000);

  it('watch: a long replay with writes landing meanwhile has no gaps and no duplicates', async () => {
    const s = open(tempDir());
    await Promise.all(Array.from({ length: 1500 }, (_, i) => s.create(`/registry/r/${i}`, 'v'.repeat(i % 50))));
    await s.create('/registry/other', 'x');
    const w = watchAll(s, '/registry/r/', 0, 1800);
    // Writes during the replay (it runs in chunks of a few hundred rows).
    for (let round = 0; round < 6; round++) {
      await Promise.all(Array.from({ length: 50 }, (_, i) => s.create(`/registry/r/live-${round}-${i}`, 'l')));
      await s.create('/registry/other2-' + round, 'x');
    }
    const evs = await w.wait();
    expect(w.error).toBeUndefined();
    expect(evs.length).toBe(1800);
    for (let i = 1; i < evs.length; i++) expect(evs[i]!.revision).toBeGreaterThan(evs[i - 1]!.revision);
    expect(new Set(evs.map((e) => e.key)).size).toBe(1800);
    expect(evs.every((e) => e.key.startsWith('/registry/r/'))).toBe(true);
  });

  it('watch: events arrive after the write call returns, one batch per commit', async () => {
    const s = open(tempDir());
    const batches: StoreEvent[][] = [];
    const h = s.watch('/registry/b/', 0, { onEvents: (evs) => batches.push(evs), onError: () => undefined });
    await sleep(10);
    const writes = Array.from({ length: 20 }, (_, i) => s.create(`/registry/b/${i}`, String(i)));
    expect(batches).toEqual([]);
    await Promise.all(writes);
    await sleep(10);
    expect(batches.length).toBe(1);
    expect(batches[0]!.length).toBe(20);
    h.cancel();
  });

  it('watch: from a revision not yet written, only events after it arrive', async () => {
    const s = open(tempDir());
    const a = await s.create('/registry/f/a', '1');
    const w = watchAll(s, '/registry/f/', a.modRevision + 2, 2, 1000);
    await sleep(10);
    await s.create('/registry/f/b', '2');
    await s.create('/registry/f/c', '3');
    await s.create('/registry/f/d', '4');
    const evs = await w.wait();
    expect(evs.map((e) => [e.key, e.revision])).toEqual([['/registry/f/d', a.modRevision + 3]]);
  });

  it('watch: a watch that started after the compacted revision and fell behind a compaction ends with Compacted', async () => {
    const s = open(tempDir());
    for (let i = 0; i < 1200; i++) await s.create(`/registry/cw/${i % 10}-${i}`, 'v');
    const w = watchAll(s, '/registry/cw/', 0, 5000, 3000);
    // The replay is chunked; compaction lands between two chunks.
    await s.compact(1100);
    await w.wait();
    expect(w.error?.code).toBe('Compacted');
    expect(w.error?.compactedRevision).toBeGreaterThan(0);
    const revs = w.events.map((e) => e.revision);
    for (let i = 1; i < revs.length; i++) expect(revs[i]).toBe(revs[i - 1]! + 1);
  });

  it('close: idempotent, ends open watches with Closed, commits writes already requested', async () => {
    const dir = tempDir();
    const s = open(dir);
    const w = watchAll(s, '/registry/', 0, 1000, 2000);
    await sleep(10);
    const pending = s.create('/registry/last', 'v');
    const closing = s.close();
    expect(s.close()).toBe(closing);
    await closing;
    expect((await pending).value).toBe('v');
    await w.wait();
    expect(w.error?.code).toBe('Closed');
    for (const p of [s.currentRevision(), s.list('/'), s.count('/'), s.create('/x', 'y'), s.compact(1)]) {
      expect((await rejection(p)).code).toBe('Closed');
    }
    const late = watchAll(s, '/registry/', 0, 1, 2000);
    await late.wait();
    expect(late.error?.code).toBe('Closed');
    const again = open(dir);
    expect((await again.get('/registry/last'))?.value).toBe('v');
  });

  it('automatic compaction keeps the newest keepRevisions revisions', async () => {
    const s = open(tempDir(), { compactEveryMs: 20, keepRevisions: 10 });
    const kv = await s.create('/registry/auto', '0');
    let cur = kv;
    for (let i = 1; i < 50; i++) cur = await s.update(cur.key, String(i), cur.modRevision);
    expect(await s.compactedRevision()).toBe(0); // nothing runs before startCompaction()
    s.startCompaction();
    for (let i = 0; i < 100 && (await s.compactedRevision()) === 0; i++) await sleep(10);
    expect(await s.compactedRevision()).toBe(cur.modRevision - 10);
    expect(await s.get('/registry/auto')).toEqual(cur);
    await s.close();
  });

  it('an acknowledged write survives kill -9', async () => {
    const dir = tempDir();
    const here = fileURLToPath(new URL('.', import.meta.url));
    const child = spawn(process.execPath, ['--import', join(here, '../../testing/register-ts.mjs'), join(here, 'testdata/crash-writer.mjs'), dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<NodeJS.Signals | number | null>((r) => child.on('exit', (code, signal) => r(signal ?? code)));
    const firstWrite = new Promise<void>((resolve) => {
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        resolve();
      });
    });
    const started = await Promise.race([firstWrite.then(() => true), exited.then(() => false), sleep(15_000).then(() => false)]);
    expect(started, `the writer did not start: ${err}`).toBe(true);
    await sleep(300);
    process.kill(child.pid!, 'SIGKILL');
    expect(await exited).toBe('SIGKILL');

    const lines = out.split('\n').slice(0, -1); // the last piece may be a partial line
    const created = lines.filter((l) => l.startsWith('k ')).map((l) => Number(l.slice(2)));
    const counts = lines.filter((l) => l.startsWith('c ')).map((l) => Number(l.slice(2)));
    expect(created.length).toBeGreaterThan(50);
    const s = open(dir);
    for (const n of created) {
      expect((await s.get(`/registry/crash/${n}`))?.value, `acknowledged create ${n}`).toBe(valueFor(n));
    }
    if (counts.length > 0) expect(Number((await s.get('/registry/crash-counter'))?.value)).toBeGreaterThanOrEqual(Math.max(...counts));
    // The store is usable after recovery.
    const after = await s.create('/registry/after-crash', 'ok');
    expect(after.modRevision).toBe(await s.currentRevision());
  }, 30_000);
});

/** The same formula as testdata/crash-writer.mjs. */
function valueFor(n: number): string {
  return JSON.stringify({ n, pad: 'x'.repeat(n % 7 === 0 ? 20_000 : 100) });
}
