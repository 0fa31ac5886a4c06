// Crash safety: `kill -9` the api in the middle of a write burst; after a restart on the
// same data dir every acknowledged write is there, revisions continue, and Service
// allocations are consistent (no IP or NodePort held twice).
import t from 'tap';
import { Agent, request } from 'undici';
import { insideOwnNetns, skipReason } from './lib/harness.js';
import { ADMIN_TOKEN, startApi } from './lib/api.js';

const skip = skipReason();

if (skip) {
  t.test('crash safety', { skip }, async () => undefined);
} else if (await insideOwnNetns(import.meta.url, 'crash')) {
  t.test('kill -9 during a write burst loses no acknowledged write', async (t) => {
    const api = await startApi();
    t.teardown(() => api.cleanup());
    let agent = new Agent({ connect: { ca: api.certs!.caPem }, connections: 32 });
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
    const acked = new Map<string, { kind: 'lease' | 'service'; rv: number }>();
    let stop = false;
    let maxRV = 0;
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const isSvc = i % 5 === 0;
        const name = `${isSvc ? 's' : 'l'}${w}-${i}`;
        const path = isSvc ? '/api/v1/namespaces/default/services' : '/apis/coordination.k8s.io/v1/namespaces/default/leases';
        const body = isSvc
          ? { apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { type: 'NodePort', selector: { app: name }, ports: [{ port: 80 }] } }
          : { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name }, spec: { holderIdentity: name } };
        try {
          const r = await request(api.url + path, { dispatcher: agent, method: 'POST', headers: auth, body: JSON.stringify(body) });
          const out = (await r.body.json()) as { metadata?: { resourceVersion?: string } };
          if (r.statusCode === 201) {
            const rv = Number(out.metadata!.resourceVersion);
            acked.set(name, { kind: isSvc ? 'service' : 'lease', rv });
            maxRV = Math.max(maxRV, rv);
          }
        } catch {
          return; // the server is gone
        }
      }
    };
    const writers = Promise.all(Array.from({ length: 16 }, (_, w) => writer(w)));
    await new Promise((r) => setTimeout(r, 1500));
    await api.kill('SIGKILL');
    stop = true;
    await writers;
    await agent.close();
    t.ok(acked.size > 100, `writes were acknowledged before the crash (${acked.size})`);

    await api.restart();
    agent = new Agent({ connect: { ca: api.certs!.caPem } });
    t.teardown(() => agent.close());
    const get = async (path: string) => (await (await request(api.url + path, { dispatcher: agent, headers: auth })).body.json()) as { metadata: { resourceVersion: string }; items: { metadata: { name: string; resourceVersion: string }; spec: { clusterIP?: string; ports?: { nodePort?: number }[] } }[] };
    const leases = await get('/apis/coordination.k8s.io/v1/namespaces/default/leases');
    const services = await get('/api/v1/namespaces/default/services');
    const stored = new Map([...leases.items, ...services.items].map((o) => [o.metadata.name, Number(o.metadata.resourceVersion)]));
    const missing = [...acked.keys()].filter((n) => !stored.has(n));
    t.same(missing, [], 'every acknowledged write survived kill -9');
    for (const [n, a] of acked) if (stored.get(n) !== a.rv) t.fail(`${n}: stored at revision ${stored.get(n)}, acknowledged at ${a.rv}`);
    t.ok(Number(services.metadata.resourceVersion) >= maxRV, 'the store revision did not go back');
    const ips = services.items.map((s) => s.spec.clusterIP!);
    const ports = services.items.flatMap((s) => (s.spec.ports ?? []).map((p) => p.nodePort!));
    t.equal(new Set(ips).size, ips.length, `no ClusterIP held twice (${ips.length} services)`);
    t.equal(new Set(ports).size, ports.length, 'no NodePort held twice');
    const after = await request(api.url + '/apis/coordination.k8s.io/v1/namespaces/default/leases', { dispatcher: agent, method: 'POST', headers: auth, body: JSON.stringify({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'after-restart' } }) });
    const body = (await after.body.json()) as { metadata: { resourceVersion: string } };
    t.equal(after.statusCode, 201, 'writes work after the restart');
    t.ok(Number(body.metadata.resourceVersion) > maxRV, 'and get newer revisions');
  });
}
