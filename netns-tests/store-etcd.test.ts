// The etcd backend of the API store: every case of the store contract against a real etcd,
// then a 3-member cluster losing a follower and then its leader (kill -9) while writes and
// watches run, and a throughput baseline. The whole file runs inside its own network
// namespace (insideOwnNetns): etcd listens on that namespace's loopback only.
import t from 'tap';
import { existsSync } from 'node:fs';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Etcd3 } from 'etcd3';
import { EtcdStore } from '../src/api/store/etcd.js';
import { storeContract } from '../src/api/store/contract.js';
import { isStoreError } from '../src/api/store/types.js';
import type { KV, StoreError, StoreEvent } from '../src/api/store/types.js';
import { insideOwnNetns, skipReason } from './lib/harness.js';
import { ETCD_BIN, EtcdCluster } from './lib/etcd.js';

const skip = skipReason() ?? (existsSync(ETCD_BIN) ? undefined : `etcd is not installed (${ETCD_BIN})`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

if (skip || (await insideOwnNetns(import.meta.url, 'etcd'))) {
  t.test('store contract on etcd (one member, a fresh key prefix per case)', { skip }, async (t) => {
    const etcd = await EtcdCluster.start();
    t.teardown(() => etcd.cleanup());
    let n = 0;
    for (const c of storeContract) {
      const prefix = `/case-${String(++n).padStart(3, '0')}`;
      await t.test(c.name, async (t) => {
        const store = await EtcdStore.open({ endpoints: etcd.endpoints, prefix });
        t.teardown(() => store.close());
        await c.run({ store, peer: () => EtcdStore.open({ endpoints: etcd.endpoints, prefix }) });
        t.pass(c.name);
      });
    }
  });

  t.test('etcd specifics: prefixes, etcd revisions, compaction by others, large lists, watch lifecycle', { skip }, async (t) => {
    const etcd = await EtcdCluster.start({ progressNotifyMs: 200 });
    t.teardown(() => etcd.cleanup());
    const a = await EtcdStore.open({ endpoints: etcd.endpoints, prefix: '/a' });
    const b = await EtcdStore.open({ endpoints: etcd.endpoints, prefix: '/b' });
    t.teardown(() => Promise.all([a.close(), b.close()]));
    const raw = new Etcd3({ hosts: etcd.endpoints });
    t.teardown(() => raw.close());

    // Prefixes and revisions.
    const kv = await a.create('/registry/x', 'from a');
    t.equal(await b.get('/registry/x'), undefined, 'another prefix does not see the key');
    t.same((await a.list('/registry/')).kvs.map((k) => k.key), ['/registry/x'], 'keys come back without the prefix');
    const stored = await raw.get('/a/registry/x').exec();
    t.equal(stored.kvs[0]?.value.toString(), 'from a', 'stored under the prefix in etcd');
    t.equal(Number(stored.kvs[0]?.mod_revision), kv.modRevision, "modRevision is etcd's mod_revision");
    t.equal(await a.currentRevision(), Number(stored.header.revision), "currentRevision is etcd's revision");

    // A watch sees writes of other etcd clients; cancelled watches are released on the server.
    const watchers = async () => (await etcd.metrics(0)).get('etcd_debugging_mvcc_watcher_total') ?? -1;
    const before = await watchers();
    const events: StoreEvent[] = [];
    let error: StoreError | undefined;
    b.watch('/registry/', kv.modRevision, { onEvents: (e) => events.push(...e), onError: (e) => (error = e) });
    await raw.put('/b/registry/y').value('raw').exec();
    await a.create('/registry/z', 'not b');
    await t.resolves(waitUntil(() => events.length === 1, 5000), 'a write by another etcd client is watched');
    t.same(events.map((e) => [e.type, e.key, e.value]), [['create', '/registry/y', 'raw']]);
    const handles = Array.from({ length: 20 }, () => a.watch('/registry/', 0, { onEvents: () => undefined, onError: () => undefined }));
    await t.resolves(waitUntil(async () => (await watchers()) >= before + 21, 5000), 'the server holds one watcher per watch');
    for (const h of handles) h.cancel();
    await t.resolves(waitUntil(async () => (await watchers()) === before + 1, 5000), 'cancelled watches are released on the server');

    // Compaction by another client: compactedRevision finds etcd's exact compaction revision.
    t.equal(await a.compactedRevision(), 0, 'nothing compacted yet');
    const old = await a.update('/registry/x', 'v2', kv.modRevision);
    for (let i = 0; i < 50; i++) await a.update('/registry/x', `v${i + 3}`, (await a.get('/registry/x'))!.modRevision);
    await raw.kv.compact({ revision: old.modRevision + 7, physical: true });
    const err = await a.list('/registry/', { revision: old.modRevision }).catch((e: unknown) => e);
    t.match(err, { code: 'Compacted', compactedRevision: old.modRevision + 7 }, 'a list below it fails with Compacted, carrying the compaction revision');
    t.equal(await a.compactedRevision(), old.modRevision + 7, "compactedRevision finds another client's compaction exactly");
    await a.compact(old.modRevision + 3);
    t.equal(await a.compactedRevision(), old.modRevision + 7, 'compacting below the compaction succeeds and changes nothing');
    const newest = await a.currentRevision();
    await a.compact(newest + 1000);
    t.equal(await a.compactedRevision(), newest, 'compacting past the newest revision compacts to the newest');

    // Lists and watch batches larger than gRPC's default 4 MiB message limit.
    const mb = 'm'.repeat(1_000_000);
    const bigStart = await a.currentRevision();
    for (let i = 0; i < 6; i++) await a.create(`/registry/big/${i}`, mb);
    t.equal((await a.list('/registry/big/')).kvs.length, 6, 'a 6 MB list');
    const bigEvents: StoreEvent[] = [];
    const bw = a.watch('/registry/big/', bigStart, { onEvents: (e) => bigEvents.push(...e), onError: () => undefined });
    await t.resolves(waitUntil(() => bigEvents.length === 6, 10_000), 'a 6 MB watch replay');
    bw.cancel();

    // An idle watch follows etcd's progress notifications: after a compaction beyond its
    // last event and a restart of the member, it resumes instead of ending with Compacted.
    const idle: StoreEvent[] = [];
    let idleError: StoreError | undefined;
    a.watch('/registry/idle/', await a.currentRevision(), { onEvents: (e) => idle.push(...e), onError: (e) => (idleError = e) });
    for (let i = 0; i < 20; i++) await a.create(`/registry/busy/${i}`, 'x');
    await sleep(700); // a few progress notifications
    await a.compact(await a.currentRevision());
    await etcd.kill(0);
    await etcd.restart(0);
    const woke = await a.create('/registry/idle/1', 'awake');
    await t.resolves(waitUntil(() => idle.length === 1 || idleError !== undefined, 10_000), 'the idle watch delivers after the restart');
    t.equal(idleError, undefined, 'without a Compacted error');
    t.same(idle.map((e) => [e.key, e.revision]), [['/registry/idle/1', woke.modRevision]]);

    // Closing ends watches with Closed; a watch whose only member is gone ends with Unavailable.
    await b.close();
    t.equal(error?.code, 'Closed', 'closing the store ends its watches with Closed');
    await b.close();
    t.pass('close is idempotent');
    await t.rejects(b.count('/registry/'), { code: 'Closed' }, 'a closed store refuses work');
    const lonely = await EtcdStore.open({ endpoints: etcd.endpoints, prefix: '/a', watchRetryMs: 500, requestTimeoutMs: 500 });
    t.teardown(() => lonely.close());
    let lost: StoreError | undefined;
    lonely.watch('/registry/', await lonely.currentRevision(), { onEvents: () => undefined, onError: (e) => (lost = e) });
    await sleep(100);
    await etcd.kill(0);
    await t.resolves(waitUntil(() => lost !== undefined, 5000), 'the watch ends');
    t.equal(lost?.code, 'Unavailable', 'with Unavailable once no member could serve it for watchRetryMs');
    await t.rejects(lonely.get('/registry/x'), { code: 'Unavailable' }, 'reads fail with Unavailable after requestTimeoutMs');
    await t.rejects(EtcdStore.open({ endpoints: etcd.endpoints, dialTimeoutMs: 300 }), { code: 'Unavailable' }, 'open fails with Unavailable');
  });

  t.test('TLS with client certificates', { skip }, async (t) => {
    const etcd = await EtcdCluster.start({ tls: true });
    t.teardown(() => etcd.cleanup());
    const tls = etcd.tls!;
    const store = await EtcdStore.open({ endpoints: etcd.endpoints, prefix: '/tls', tls });
    t.teardown(() => store.close());
    const events: StoreEvent[] = [];
    store.watch('/registry/', await store.currentRevision(), { onEvents: (e) => events.push(...e), onError: () => undefined });
    const kv = await store.create('/registry/s', 'secret');
    t.same(await store.get('/registry/s'), kv, 'reads and writes over TLS');
    await t.resolves(waitUntil(() => events.length === 1, 5000), 'watches over TLS');
    const hostPort = etcd.endpoints.map((e) => e.replace(/^https:\/\//, ''));
    const bare = await EtcdStore.open({ endpoints: hostPort, prefix: '/tls', tls });
    t.teardown(() => bare.close());
    t.equal((await bare.get('/registry/s'))?.value, 'secret', 'host:port endpoints with tls options use TLS');
    const named = await EtcdStore.open({ endpoints: etcd.endpoints, prefix: '/tls', tls: { ...tls, serverName: 'localhost' } });
    t.teardown(() => named.close());
    t.equal((await named.get('/registry/s'))?.value, 'secret', 'serverName: the certificate is checked against that name');
    await t.rejects(EtcdStore.open({ endpoints: etcd.endpoints, tls: { ...tls, serverName: 'elsewhere.example' }, dialTimeoutMs: 500 }), { code: 'Unavailable' }, 'a certificate for another name: refused');
    await t.rejects(EtcdStore.open({ endpoints: etcd.endpoints, tls: { ca: tls.ca }, dialTimeoutMs: 500 }), { code: 'Unavailable' }, 'without a client certificate: refused');
    await t.rejects(EtcdStore.open({ endpoints: etcd.endpoints.map((e) => e.replace('https:', 'http:')), dialTimeoutMs: 500 }), { code: 'Unavailable' }, 'plain HTTP to a TLS member: refused');
  });

  t.test('3-member cluster: kill -9 a follower, then the leader, while writes and watches run', { skip }, async (t) => {
    const etcd = await EtcdCluster.start({ members: 3 });
    t.teardown(() => etcd.cleanup());
    const leader0 = await etcd.leader();
    const follower = [0, 1, 2].find((i) => i !== leader0)!;
    const prefix = '/ha';
    const writer = await EtcdStore.open({ endpoints: etcd.endpoints, prefix, requestTimeoutMs: 2000 });
    t.teardown(() => writer.close());
    const start = await writer.currentRevision();

    let losses = 0;
    let reconnects = 0;
    const onReconnect = (m: unknown) => {
      reconnects++;
      if ((m as { attempt: number }).attempt === 0) losses++;
    };
    subscribe('podnet:store:etcd:watch-reconnect', onReconnect);
    t.teardown(() => unsubscribe('podnet:store:etcd:watch-reconnect', onReconnect));

    // Three watchers: any member, pinned to the follower that will be killed (it must
    // resume once the member is back), pinned to the first leader.
    const watchers = await Promise.all(
      [
        { name: 'any member', endpoints: etcd.endpoints },
        { name: `only m${follower} (follower, killed and restarted)`, endpoints: [etcd.members[follower]!.clientUrl] },
        { name: `only m${leader0} (first leader)`, endpoints: [etcd.members[leader0]!.clientUrl] },
      ].map(async (w) => {
        const store = await EtcdStore.open({ endpoints: w.endpoints, prefix });
        t.teardown(() => store.close());
        const events: StoreEvent[] = [];
        const errors: StoreError[] = [];
        store.watch('/registry/ha/', start, { onEvents: (e) => events.push(...e), onError: (e) => errors.push(e) });
        return { ...w, events, errors };
      }),
    );

    // Writers: 4 concurrent loops creating unique keys. Unavailable is retried; a retried
    // create that finds its key already there with its own value was applied the first time.
    const acked = new Map<string, number>();
    let seq = 0;
    let stop = false;
    let lastAck = Date.now();
    let phase = { name: '', writes: 0, retries: 0, ambiguous: 0, maxGap: 0, errors: new Set<string>() };
    const phases: (typeof phase)[] = [];
    const write = async (key: string, value: string): Promise<KV> => {
      for (let retried = false; ; retried = true) {
        try {
          return await writer.create(key, value);
        } catch (e) {
          if (isStoreError(e, 'Unavailable')) {
            phase.retries++;
            if (/may or may not/.test(e.message)) phase.ambiguous++;
            phase.errors.add(e.message.replace(/^create: /, '').slice(0, 160));
            await sleep(10);
            continue;
          }
          if (retried && isStoreError(e, 'KeyExists')) {
            const kv = await writer.get(key);
            if (kv?.value === value) return kv;
          }
          throw e;
        }
      }
    };
    const loops = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const i = seq++;
        const key = `/registry/ha/${String(i).padStart(6, '0')}`;
        const kv = await write(key, `v${i}`);
        acked.set(key, kv.modRevision);
        const now = Date.now();
        phase.maxGap = Math.max(phase.maxGap, now - lastAck);
        lastAck = now;
        phase.writes++;
      }
    });
    const runPhase = async (name: string, fn: () => Promise<void>, ms: number) => {
      phase = { name, writes: 0, retries: 0, ambiguous: 0, maxGap: 0, errors: new Set<string>() };
      phases.push(phase);
      const t0 = Date.now();
      await fn();
      const left = ms - (Date.now() - t0);
      if (left > 0) await sleep(left);
    };

    await runPhase('healthy', async () => undefined, 1000);
    await runPhase(`follower m${follower} killed`, () => etcd.kill(follower), 1500);
    await runPhase(`follower m${follower} restarted`, () => etcd.restart(follower), 1000);
    const leader1 = await etcd.leader();
    await runPhase(`leader m${leader1} killed`, () => etcd.kill(leader1), 3000);
    await runPhase(`leader m${leader1} restarted`, () => etcd.restart(leader1), 500);
    stop = true;
    await Promise.all(loops);

    for (const p of phases) {
      t.comment(`${p.name}: ${p.writes} writes, ${p.retries} Unavailable retried (${p.ambiguous} of unknown outcome), longest gap between acknowledged writes ${p.maxGap} ms`);
      for (const m of p.errors) t.comment(`  ${m}`);
    }
    t.comment(`watch streams lost: ${losses}, reconnection attempts: ${reconnects}`);
    t.ok(phases.every((p) => p.writes > 0), 'writes succeed in every phase');

    const expected = [...acked.entries()].sort((x, y) => x[1] - y[1]);
    for (const w of watchers) {
      await waitUntil(() => w.events.length >= expected.length || w.errors.length > 0, 20_000).catch(() => undefined);
      t.same(w.errors, [], `${w.name}: the watch did not end`);
      t.equal(w.events.length, expected.length, `${w.name}: one event per acknowledged write`);
      t.equal(new Set(w.events.map((e) => e.key)).size, w.events.length, `${w.name}: no duplicates`);
      t.ok(w.events.every((e, i) => i === 0 || e.revision > w.events[i - 1]!.revision), `${w.name}: strictly increasing revisions`);
      t.same(
        w.events.map((e) => [e.type, e.key, e.revision]),
        expected.map(([k, r]) => ['create', k, r]),
        `${w.name}: exactly the acknowledged writes, in revision order`,
      );
    }
    t.ok(losses >= 2, 'the pinned watches lost their member and resumed');
    t.equal(await writer.count('/registry/ha/'), acked.size, 'the store holds exactly the acknowledged keys');

    // Quorum lost: thanks to require-leader the survivor refuses requests at once ("no
    // leader", safe to retry) instead of holding writes until a deadline.
    const survivor = etcd.running[0]!.index;
    const alone = await EtcdStore.open({ endpoints: [etcd.members[survivor]!.clientUrl], prefix, requestTimeoutMs: 1000 });
    t.teardown(() => alone.close());
    await Promise.all(etcd.running.filter((m) => m.index !== survivor).map((m) => etcd.kill(m.index)));
    await sleep(1500); // > 2 election timeouts: the survivor knows it has no leader
    const noQuorum = await alone.create('/registry/ha/no-quorum', 'x').catch((e: unknown) => e);
    t.match(noQuorum, { code: 'Unavailable', message: /no leader/ }, 'without quorum: Unavailable, "no leader"');
    t.notMatch(String((noQuorum as Error).message), /may or may not/, 'and the write is known not to have been applied');
  });

  t.test('baseline: put throughput of the etcd3 client and of EtcdStore against one local member', { skip }, async (t) => {
    const etcd = await EtcdCluster.start();
    t.teardown(() => etcd.cleanup());
    const raw = new Etcd3({ hosts: etcd.endpoints });
    t.teardown(() => raw.close());
    const store = await EtcdStore.open({ endpoints: etcd.endpoints, prefix: '/bench' });
    t.teardown(() => store.close());
    const value = JSON.stringify({ kind: 'Pod', metadata: { name: 'x', namespace: 'default' }, spec: { nodeName: 'n1' }, pad: 'p'.repeat(400) });

    const measure = async (label: string, total: number, concurrency: number, op: (i: number) => Promise<unknown>) => {
      let next = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < total) await op(next++);
        }),
      );
      const s = (performance.now() - t0) / 1000;
      t.comment(`${label}: ${total} in ${s.toFixed(2)} s = ${Math.round(total / s)} ops/s`);
    };
    await measure('etcd3 put, sequential', 1000, 1, (i) => raw.put(`/raw/s/${i}`).value(value).exec());
    await measure('etcd3 put, 50 concurrent', 5000, 50, (i) => raw.put(`/raw/c/${i}`).value(value).exec());
    await measure('EtcdStore.create, sequential', 1000, 1, (i) => store.create(`/registry/s/${i}`, value));
    await measure('EtcdStore.create, 50 concurrent', 5000, 50, (i) => store.create(`/registry/c/${i}`, value));
    t.equal(await store.count('/registry/'), 6000);
  });
}

async function waitUntil(check: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms`);
    await sleep(20);
  }
}
