// Watch correctness under load: 10,000 mixed writes (create / update / delete) from
// several writers while 20 watchers watch and reconnect at random points. Every watcher
// must end with exactly the store's final state, receive every write after its start
// exactly once (checked against the revisions the writers were acknowledged with), and
// see resourceVersions strictly increasing across its reconnects.
import t from 'tap';
import { Agent, request } from 'undici';
import { insideOwnNetns, skipReason, waitFor } from './lib/harness.js';
import { ADMIN_TOKEN, startApi } from './lib/api.js';

const skip = skipReason();
const WRITES = Number(process.env.PODNET_WATCH_WRITES ?? 10_000);
const WRITERS = 5;
const WATCHERS = 20;
const NS = 'watch';
const BASE = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`;

interface Watcher {
  id: number;
  state: Map<string, number>;
  startRV: number;
  lastRV: number;
  received: Set<number>;
  duplicates: number;
  nonIncreasing: number;
  reconnects: number;
  relists: number;
  errors: string[];
}

if (skip) {
  t.test('watch correctness', { skip }, async () => undefined);
} else if (await insideOwnNetns(import.meta.url, 'watch')) {
  t.test(`watch correctness: ${WRITES} writes, ${WRITERS} writers, ${WATCHERS} reconnecting watchers`, async (t) => {
    const api = await startApi();
    t.teardown(() => api.cleanup());
    const agent = new Agent({ connect: { ca: api.certs!.caPem }, connections: 64, pipelining: 1 });
    t.teardown(() => agent.close());
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    t.equal((await api.call('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } })).status, 201);

    const list = async () => {
      const r = await request(api.url + BASE, { dispatcher: agent, headers: auth });
      const body = (await r.body.json()) as { metadata: { resourceVersion: string }; items: { metadata: { name: string; resourceVersion: string } }[] };
      return { rv: Number(body.metadata.resourceVersion), items: new Map(body.items.map((i) => [i.metadata.name, Number(i.metadata.resourceVersion)])) };
    };

    // ---- watchers
    let writing = true;
    const watchers: Watcher[] = [];
    const runWatcher = async (w: Watcher) => {
      while (writing || w.lastRV < finalRV) {
        const ac = new AbortController();
        const lifetime = 100 + Math.random() * 700;
        const timer = setTimeout(() => ac.abort(), lifetime);
        try {
          const r = await request(`${api.url}${BASE}?watch=true&allowWatchBookmarks=true&resourceVersion=${w.lastRV}`, { dispatcher: agent, headers: auth, signal: ac.signal });
          if (r.statusCode !== 200) throw new Error(`watch answered ${r.statusCode}`);
          let buf = '';
          for await (const chunk of r.body) {
            buf += chunk.toString();
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              const ev = JSON.parse(line) as { type: string; object: { code?: number; metadata?: { name: string; resourceVersion: string } } };
              if (ev.type === 'ERROR') {
                if (ev.object.code === 410) {
                  // Too old: relist, as an informer would.
                  const l = await list();
                  w.state = l.items;
                  w.lastRV = l.rv;
                  w.relists++;
                  ac.abort();
                  break;
                }
                throw new Error(`watch ERROR ${JSON.stringify(ev.object)}`);
              }
              const rv = Number(ev.object.metadata!.resourceVersion);
              if (ev.type === 'BOOKMARK') {
                if (rv < w.lastRV) w.nonIncreasing++;
                w.lastRV = Math.max(w.lastRV, rv);
                continue;
              }
              if (rv <= w.lastRV) w.nonIncreasing++;
              if (w.received.has(rv)) w.duplicates++;
              w.received.add(rv);
              w.lastRV = rv;
              const name = ev.object.metadata!.name;
              if (ev.type === 'DELETED') w.state.delete(name);
              else w.state.set(name, rv);
            }
          }
        } catch (e) {
          if (!ac.signal.aborted) w.errors.push(String(e));
        } finally {
          clearTimeout(timer);
        }
        w.reconnects++;
      }
    };
    let finalRV = Infinity;
    const start = await list();
    for (let i = 0; i < WATCHERS; i++) watchers.push({ id: i, state: new Map(start.items), startRV: start.rv, lastRV: start.rv, received: new Set(), duplicates: 0, nonIncreasing: 0, reconnects: 0, relists: 0, errors: [] });
    const watching = Promise.all(watchers.map((w) => runWatcher(w)));

    // ---- writers: each owns 40 names and does a random mix of create / update / delete
    const acked: number[] = [];
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, wi) => {
        const present = new Map<string, number>();
        for (let i = 0; i < WRITES / WRITERS; i++) {
          const name = `w${wi}-${Math.floor(Math.random() * 40)}`;
          const rv = present.get(name);
          const op = rv === undefined ? 'create' : Math.random() < 0.7 ? 'update' : 'delete';
          const json = { 'content-type': 'application/json' };
          const obj = (extra: Record<string, string>) => JSON.stringify({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, ...extra }, spec: { holderIdentity: `h${i}` } });
          const r =
            op === 'create'
              ? await request(api.url + BASE, { dispatcher: agent, method: 'POST', headers: { ...auth, ...json }, body: obj({}) })
              : op === 'update'
                ? await request(`${api.url}${BASE}/${name}`, { dispatcher: agent, method: 'PUT', headers: { ...auth, ...json }, body: obj({ resourceVersion: String(rv) }) })
                : await request(`${api.url}${BASE}/${name}`, { dispatcher: agent, method: 'DELETE', headers: auth });
          const body = (await r.body.json()) as { metadata: { resourceVersion: string } };
          if (r.statusCode !== 200 && r.statusCode !== 201) throw new Error(`${op} answered ${r.statusCode}: ${JSON.stringify(body)}`);
          const newRV = Number(body.metadata.resourceVersion);
          acked.push(newRV);
          if (op === 'delete') present.delete(name);
          else present.set(name, newRV);
        }
      }),
    );
    const writeSeconds = (Date.now() - t0) / 1000;
    const final = await list();
    finalRV = final.rv;
    writing = false;
    await waitFor(() => watchers.every((w) => w.lastRV >= finalRV), 60_000, 'every watcher to catch up with the final revision');
    await watching;

    t.equal(acked.length, WRITES, `all ${WRITES} writes acknowledged (${Math.round(WRITES / writeSeconds)} writes/s over HTTPS)`);
    t.equal(new Set(acked).size, WRITES, 'every acknowledged write has its own revision');
    const reconnects = watchers.reduce((s, w) => s + w.reconnects, 0);
    t.ok(reconnects >= WATCHERS * 3, `watchers reconnected at random points (${reconnects} reconnects)`);
    for (const w of watchers) {
      t.same(Object.fromEntries(w.state), Object.fromEntries(final.items), `watcher ${w.id}: final state equals the store's`);
      t.equal(w.duplicates, 0, `watcher ${w.id}: no duplicated event`);
      t.equal(w.nonIncreasing, 0, `watcher ${w.id}: resourceVersions strictly increasing`);
      if (w.relists === 0) {
        const expected = acked.filter((rv) => rv > w.startRV).sort((a, b) => a - b);
        const got = [...w.received].sort((a, b) => a - b);
        t.same(got, expected, `watcher ${w.id}: received exactly the acknowledged writes (${got.length} events)`);
      } else {
        t.pass(`watcher ${w.id}: relisted ${w.relists} time(s); final state checked`);
      }
      t.same(w.errors, [], `watcher ${w.id}: no unexpected errors`);
    }
  });
}
