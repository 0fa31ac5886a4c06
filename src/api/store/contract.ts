/**
 * The store contract: one list of cases every backend must pass (SQLite in the unit
 * tier, etcd in the netns tier). Framework-agnostic: each case uses node:assert and gets
 * a fresh, empty store; sqlite.test.ts (vitest) and netns-tests/store-etcd.test.ts (tap)
 * run them.
 */
import assert from 'node:assert/strict';
import { StoreError } from './types.js';
import type { KV, Store, StoreEvent } from './types.js';

export interface ContractContext {
  /** A fresh, empty store for this case. */
  store: Store;
  /** Another client on the same backend and data (a second api process), when it exists. */
  peer?: () => Promise<Store>;
}

export interface ContractCase {
  name: string;
  run(ctx: ContractContext): Promise<void>;
}

async function rejectsWith(p: Promise<unknown>, code: StoreError['code']): Promise<StoreError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof StoreError, `expected a StoreError ${code}, got ${String(e)}`);
    assert.equal(e.code, code);
    return e;
  }
  assert.fail(`expected StoreError ${code}, the call succeeded`);
}

/** Collects watch events until `n` have arrived (or the timeout passes). */
function collect(store: Store, prefix: string, after: number, n: number, ms = 5000) {
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
      return events;
    },
    cancel: () => h.cancel(),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const storeContract: ContractCase[] = [
  {
    name: 'create, get and revisions',
    async run({ store }) {
      const r0 = await store.currentRevision();
      const a = await store.create('/registry/a', '{"n":1}');
      assert.equal(a.key, '/registry/a');
      assert.equal(a.value, '{"n":1}');
      assert.ok(a.modRevision > r0, 'revision advances');
      assert.equal(a.createRevision, a.modRevision);
      assert.deepEqual(await store.get('/registry/a'), a);
      assert.equal(await store.get('/registry/missing'), undefined);
      const b = await store.create('/registry/b', 'x');
      assert.ok(b.modRevision > a.modRevision, 'strictly increasing');
      assert.equal(await store.currentRevision(), b.modRevision);
      await rejectsWith(store.create('/registry/a', 'again'), 'KeyExists');
      assert.equal((await store.get('/registry/a'))?.value, '{"n":1}', 'a failed create changes nothing');
    },
  },
  {
    name: 'update is compare-and-swap on modRevision',
    async run({ store }) {
      const a = await store.create('/registry/k', 'v1');
      const a2 = await store.update('/registry/k', 'v2', a.modRevision);
      assert.equal(a2.value, 'v2');
      assert.ok(a2.modRevision > a.modRevision);
      assert.equal(a2.createRevision, a.createRevision, 'createRevision is kept');
      const err = await rejectsWith(store.update('/registry/k', 'v3', a.modRevision), 'Conflict');
      assert.equal(err.current?.value, 'v2', 'a conflict reports what is stored');
      assert.equal((await store.get('/registry/k'))?.value, 'v2');
      await rejectsWith(store.update('/registry/none', 'v', 1), 'NotFound');
    },
  },
  {
    name: 'delete, with and without a precondition',
    async run({ store }) {
      const a = await store.create('/registry/d1', 'v');
      const b = await store.create('/registry/d2', 'w');
      await rejectsWith(store.delete('/registry/d1', a.modRevision + 1000), 'Conflict');
      const del = await store.delete('/registry/d1', a.modRevision);
      assert.equal(del.value, 'v', 'returns the deleted value');
      assert.ok(del.modRevision > b.modRevision, 'the deletion has its own revision');
      assert.equal(await store.get('/registry/d1'), undefined);
      await rejectsWith(store.delete('/registry/d1'), 'NotFound');
      await store.delete('/registry/d2');
      const again = await store.create('/registry/d1', 'reborn');
      assert.ok(again.createRevision > del.modRevision, 'a recreated key is a new incarnation');
    },
  },
  {
    name: 'list: prefix, key order, count',
    async run({ store }) {
      for (const k of ['/registry/pods/ns2/b', '/registry/pods/ns1/b', '/registry/pods/ns1/a', '/registry/podsx/z', '/registry/services/ns1/a']) {
        await store.create(k, k);
      }
      const pods = await store.list('/registry/pods/');
      assert.deepEqual(pods.kvs.map((k) => k.key), ['/registry/pods/ns1/a', '/registry/pods/ns1/b', '/registry/pods/ns2/b']);
      assert.equal(pods.more, false);
      assert.equal(pods.revision, await store.currentRevision());
      assert.deepEqual((await store.list('/registry/pods/ns1/')).kvs.map((k) => k.value), ['/registry/pods/ns1/a', '/registry/pods/ns1/b']);
      assert.equal(await store.count('/registry/pods/'), 3);
      assert.equal(await store.count('/registry/nothing/'), 0);
      assert.deepEqual((await store.list('/registry/nothing/')).kvs, []);
    },
  },
  {
    name: 'list: consistent pages at a fixed revision despite concurrent writes',
    async run({ store }) {
      for (let i = 0; i < 25; i++) await store.create(`/registry/p/${String(i).padStart(3, '0')}`, `v${i}`);
      const first = await store.list('/registry/p/', { limit: 10 });
      assert.equal(first.kvs.length, 10);
      assert.equal(first.more, true);
      // Changes after the snapshot must not show in later pages.
      await store.create('/registry/p/0155', 'late');
      await store.delete('/registry/p/020');
      const last = first.kvs[first.kvs.length - 1]!;
      await store.update(`/registry/p/015`, 'changed', (await store.get('/registry/p/015'))!.modRevision);
      const second = await store.list('/registry/p/', { limit: 10, startAfter: last.key, revision: first.revision });
      const third = await store.list('/registry/p/', { limit: 10, startAfter: second.kvs[second.kvs.length - 1]!.key, revision: first.revision });
      assert.equal(second.revision, first.revision);
      assert.equal(third.more, false);
      const all = [...first.kvs, ...second.kvs, ...third.kvs];
      assert.deepEqual(all.map((k) => k.key), Array.from({ length: 25 }, (_, i) => `/registry/p/${String(i).padStart(3, '0')}`));
      assert.equal(all.find((k) => k.key === '/registry/p/015')?.value, 'v15', 'old value at the snapshot');
      const now = await store.list('/registry/p/');
      assert.equal(now.kvs.length, 25, 'now: one added, one deleted');
      assert.ok(now.kvs.some((k) => k.key === '/registry/p/0155'));
    },
  },
  {
    name: 'list at an old revision returns the old state',
    async run({ store }) {
      const a = await store.create('/registry/h/a', '1');
      const rev1 = a.modRevision;
      await store.update('/registry/h/a', '2', rev1);
      await store.create('/registry/h/b', '3');
      const old = await store.list('/registry/h/', { revision: rev1 });
      assert.deepEqual(old.kvs.map((k) => [k.key, k.value, k.modRevision]), [['/registry/h/a', '1', rev1]]);
      assert.equal(old.revision, rev1);
    },
  },
  {
    name: 'compaction forgets history but keeps live keys',
    async run({ store }) {
      const a = await store.create('/registry/c/a', '1');
      const a2 = await store.update('/registry/c/a', '2', a.modRevision);
      const b = await store.create('/registry/c/b', 'x');
      await store.delete('/registry/c/b', b.modRevision);
      const cur = await store.currentRevision();
      await store.compact(cur);
      assert.ok((await store.compactedRevision()) >= cur - 0);
      const now = await store.list('/registry/c/');
      assert.deepEqual(now.kvs.map((k) => [k.key, k.value, k.modRevision]), [['/registry/c/a', '2', a2.modRevision]]);
      await rejectsWith(store.list('/registry/c/', { revision: a.modRevision }), 'Compacted');
      const w = collect(store, '/registry/c/', a.modRevision, 1, 2000);
      await w.wait();
      w.cancel();
      assert.equal(w.error?.code, 'Compacted', 'watching from before the compaction fails with Compacted');
      // writes keep working after compaction
      const a3 = await store.update('/registry/c/a', '3', a2.modRevision);
      assert.ok(a3.modRevision > cur);
    },
  },
  {
    name: 'watch delivers every change after a revision, in order, with previous values',
    async run({ store }) {
      const start = await store.currentRevision();
      const w = collect(store, '/registry/w/', start, 5);
      const a = await store.create('/registry/w/a', 'a1');
      await store.create('/registry/other/x', 'ignored');
      const a2 = await store.update('/registry/w/a', 'a2', a.modRevision);
      const b = await store.create('/registry/w/b', 'b1');
      await store.delete('/registry/w/a', a2.modRevision);
      await store.update('/registry/w/b', 'b2', b.modRevision);
      const evs = await w.wait();
      w.cancel();
      assert.deepEqual(evs.map((e) => [e.type, e.key, e.value, e.prevValue]), [
        ['create', '/registry/w/a', 'a1', undefined],
        ['update', '/registry/w/a', 'a2', 'a1'],
        ['create', '/registry/w/b', 'b1', undefined],
        ['delete', '/registry/w/a', 'a2', 'a2'],
        ['update', '/registry/w/b', 'b2', 'b1'],
      ]);
      for (let i = 1; i < evs.length; i++) assert.ok(evs[i]!.revision > evs[i - 1]!.revision, 'strictly increasing revisions');
      assert.equal(evs[0]!.revision, a.modRevision);
      assert.equal(evs[0]!.createRevision, a.modRevision);
    },
  },
  {
    name: 'watch from an older revision replays history, then continues live',
    async run({ store }) {
      const a = await store.create('/registry/r/a', '1');
      await store.update('/registry/r/a', '2', a.modRevision);
      const w = collect(store, '/registry/r/', a.modRevision - 1, 3);
      await sleep(50);
      await store.create('/registry/r/b', 'live');
      const evs = await w.wait();
      w.cancel();
      assert.deepEqual(evs.map((e) => [e.type, e.key, e.value]), [
        ['create', '/registry/r/a', '1'],
        ['update', '/registry/r/a', '2'],
        ['create', '/registry/r/b', 'live'],
      ]);
    },
  },
  {
    name: 'cancelled watches receive nothing more',
    async run({ store }) {
      const w = collect(store, '/registry/x/', await store.currentRevision(), 100, 500);
      await store.create('/registry/x/1', '1');
      await sleep(100);
      w.cancel();
      const n = w.events.length;
      await store.create('/registry/x/2', '2');
      await sleep(200);
      assert.equal(w.events.length, n);
    },
  },
  {
    name: 'concurrent compare-and-swap: exactly one writer wins',
    async run({ store }) {
      const a = await store.create('/registry/cas', '0');
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => store.update('/registry/cas', `w${i}`, a.modRevision)));
      const ok = results.filter((r) => r.status === 'fulfilled');
      assert.equal(ok.length, 1, 'one winner');
      for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as StoreError).code, 'Conflict');
      assert.equal((await store.get('/registry/cas'))?.value, (ok[0] as PromiseFulfilledResult<KV>).value.value);
      const creates = await Promise.allSettled(Array.from({ length: 10 }, () => store.create('/registry/once', 'x')));
      assert.equal(creates.filter((r) => r.status === 'fulfilled').length, 1, 'one create of the same key wins');
    },
  },
  {
    name: 'many concurrent writers: every write acknowledged is stored and watched once',
    async run({ store }) {
      const start = await store.currentRevision();
      const w = collect(store, '/registry/m/', start, 200, 15000);
      await Promise.all(Array.from({ length: 200 }, (_, i) => store.create(`/registry/m/${i}`, String(i))));
      const evs = await w.wait();
      w.cancel();
      assert.equal(evs.length, 200);
      assert.equal(new Set(evs.map((e) => e.key)).size, 200, 'no duplicates');
      for (let i = 1; i < evs.length; i++) assert.ok(evs[i]!.revision > evs[i - 1]!.revision);
      assert.equal(await store.count('/registry/m/'), 200);
    },
  },
  {
    name: 'values: large, unicode, and keys with odd characters',
    async run({ store }) {
      const big = 'x'.repeat(1_000_000);
      const kv = await store.create('/registry/big', big);
      assert.equal((await store.get('/registry/big'))?.value.length, big.length);
      assert.equal(kv.value.length, big.length);
      await store.create('/registry/u/ünï-cødé', '{"s":"😀 ∑"}');
      assert.equal((await store.get('/registry/u/ünï-cødé'))?.value, '{"s":"😀 ∑"}');
      await store.create('/registry/u/a%b_c.d', 'ok');
      assert.deepEqual((await store.list('/registry/u/')).kvs.map((k) => k.key).sort(), ['/registry/u/a%b_c.d', '/registry/u/ünï-cødé'].sort());
    },
  },
  {
    name: 'a second client sees the first one\'s writes, and its watches see them live',
    async run({ store, peer }) {
      if (!peer) return; // single-process backend
      const other = await peer();
      try {
        const start = await store.currentRevision();
        const w = collect(other, '/registry/peer/', start, 2);
        const a = await store.create('/registry/peer/a', '1');
        assert.equal((await other.get('/registry/peer/a'))?.value, '1');
        await other.update('/registry/peer/a', '2', a.modRevision);
        assert.equal((await store.get('/registry/peer/a'))?.value, '2');
        const evs = await w.wait();
        w.cancel();
        assert.deepEqual(evs.map((e) => e.value), ['1', '2']);
      } finally {
        await other.close();
      }
    },
  },
  {
    name: 'transactions apply every op or none',
    async run({ store }) {
      const a = await store.create('/registry/t/a', 'a1');
      const before = await store.currentRevision();
      const kvs = await store.transaction([
        { kind: 'create', key: '/registry/t/b', value: 'b1' },
        { kind: 'update', key: '/registry/t/a', value: 'a2', expectedModRevision: a.modRevision },
        { kind: 'create', key: '/registry/t/c', value: 'c1' },
      ]);
      assert.deepEqual(kvs.map((k) => [k.key, k.value]), [['/registry/t/b', 'b1'], ['/registry/t/a', 'a2'], ['/registry/t/c', 'c1']]);
      for (const kv of kvs) assert.ok(kv.modRevision > before, 'every op is later than what came before');
      assert.equal(kvs[1]!.createRevision, a.createRevision);
      // The last op fails: nothing of the transaction is applied.
      const r0 = await store.currentRevision();
      const err = await rejectsWith(store.transaction([
        { kind: 'delete', key: '/registry/t/b' },
        { kind: 'create', key: '/registry/t/d', value: 'd1' },
        { kind: 'create', key: '/registry/t/c', value: 'again' },
      ]), 'KeyExists');
      assert.equal(err.key, '/registry/t/c', 'the error names the failing key');
      assert.equal(await store.currentRevision(), r0, 'a failed transaction writes nothing');
      assert.equal((await store.get('/registry/t/b'))?.value, 'b1');
      assert.equal(await store.get('/registry/t/d'), undefined);
      const conflict = await rejectsWith(store.transaction([{ kind: 'update', key: '/registry/t/a', value: 'x', expectedModRevision: a.modRevision }]), 'Conflict');
      assert.equal(conflict.current?.value, 'a2');
      await rejectsWith(store.transaction([{ kind: 'delete', key: '/registry/t/none' }]), 'NotFound');
      const del = await store.transaction([{ kind: 'delete', key: '/registry/t/b' }, { kind: 'delete', key: '/registry/t/c' }]);
      assert.deepEqual(del.map((k) => k.value), ['b1', 'c1'], 'deletes return the deleted values');
      assert.deepEqual((await store.list('/registry/t/')).kvs.map((k) => k.key), ['/registry/t/a']);
    },
  },
  {
    name: 'a check op guards a transaction without writing',
    async run({ store }) {
      const ns = await store.create('/registry/c/ns', 'active');
      const r0 = await store.currentRevision();
      const [seen, made] = await store.transaction([
        { kind: 'check', key: '/registry/c/ns', expectedModRevision: ns.modRevision },
        { kind: 'create', key: '/registry/c/obj', value: 'o1' },
      ]);
      assert.deepEqual([seen!.key, seen!.value, seen!.modRevision], ['/registry/c/ns', 'active', ns.modRevision], 'a check returns the current KV');
      assert.ok(made!.modRevision > r0);
      const watched = collect(store, '/registry/c/', r0, 2, 500);
      // The guarded key moved on: the transaction fails with Conflict and writes nothing.
      const ns2 = await store.update('/registry/c/ns', 'terminating', ns.modRevision);
      const r1 = await store.currentRevision();
      const conflict = await rejectsWith(store.transaction([
        { kind: 'check', key: '/registry/c/ns', expectedModRevision: ns.modRevision },
        { kind: 'create', key: '/registry/c/obj2', value: 'o2' },
      ]), 'Conflict');
      assert.equal(conflict.key, '/registry/c/ns');
      assert.equal(conflict.current?.modRevision, ns2.modRevision);
      assert.equal(await store.currentRevision(), r1, 'a failed check writes nothing');
      assert.equal(await store.get('/registry/c/obj2'), undefined);
      await rejectsWith(store.transaction([{ kind: 'check', key: '/registry/c/none', expectedModRevision: 1 }]), 'NotFound');
      const evs = await watched.wait();
      watched.cancel();
      assert.deepEqual(evs.map((e) => [e.type, e.key]), [['create', '/registry/c/obj'], ['update', '/registry/c/ns']], 'a check is no event');
    },
  },
  {
    name: 'a transaction is watched as its events, once each',
    async run({ store }) {
      const start = await store.currentRevision();
      const w = collect(store, '/registry/tw/', start, 3);
      await store.transaction([
        { kind: 'create', key: '/registry/tw/x', value: '1' },
        { kind: 'create', key: '/registry/tw/y', value: '2' },
      ]);
      await store.create('/registry/tw/z', '3');
      const evs = await w.wait();
      w.cancel();
      assert.deepEqual(evs.map((e) => [e.type, e.key]), [['create', '/registry/tw/x'], ['create', '/registry/tw/y'], ['create', '/registry/tw/z']]);
      for (let i = 1; i < evs.length; i++) assert.ok(evs[i]!.revision >= evs[i - 1]!.revision);
      assert.ok(evs[2]!.revision > evs[1]!.revision);
    },
  },
  {
    name: 'closed stores refuse work',
    async run({ store }) {
      await store.close();
      await rejectsWith(store.get('/registry/a'), 'Closed');
    },
  },
];
