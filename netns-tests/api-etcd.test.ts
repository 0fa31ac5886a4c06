// podnet api on etcd: two api processes on one 3-member etcd cluster serve the same
// cluster (a watch on one sees writes made through the other; allocations never
// collide), and writes and watches continue when an etcd member is killed.
import t from 'tap';
import { Agent, request } from 'undici';
import { insideOwnNetns, skipReason, waitFor } from './lib/harness.js';
import { ADMIN_TOKEN, startApi } from './lib/api.js';
import { EtcdCluster } from './lib/etcd.js';
import { existsSync } from 'node:fs';

const skip = skipReason() ?? (existsSync('/usr/bin/etcd') ? undefined : 'etcd is not installed (Debian package etcd-server)');

if (skip) {
  t.test('podnet api on etcd', { skip }, async () => undefined);
} else if (await insideOwnNetns(import.meta.url, 'apietcd')) {
  t.test('two api processes on a 3-member etcd', async (t) => {
    const etcd = await EtcdCluster.start({ members: 3 });
    t.teardown(() => etcd.cleanup());
    const endpoints = etcd.endpoints.join(',');
    const a = await startApi({ port: 6443, etcdServers: endpoints, etcdPrefix: '/podnet' });
    t.teardown(() => a.cleanup());
    const b = await startApi({ port: 6444, etcdServers: endpoints, etcdPrefix: '/podnet' });
    t.teardown(() => b.cleanup());
    const agentA = new Agent({ connect: { ca: a.certs!.caPem } });
    const agentB = new Agent({ connect: { ca: b.certs!.caPem } });
    t.teardown(async () => {
      await agentA.close();
      await agentB.close();
    });
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
    const LEASES = '/apis/coordination.k8s.io/v1/namespaces/default/leases';

    // A watch on B.
    const seen: string[] = [];
    const ac = new AbortController();
    t.teardown(() => ac.abort());
    const start = await b.call<{ metadata: { resourceVersion: string } }>('GET', LEASES);
    let lastRV = start.body.metadata.resourceVersion;
    const watchB = (async () => {
      while (!ac.signal.aborted) {
        try {
          const r = await request(`${b.url}${LEASES}?watch=true&resourceVersion=${lastRV}`, { dispatcher: agentB, headers: auth, signal: ac.signal });
          let buf = '';
          for await (const chunk of r.body) {
            buf += chunk.toString();
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const ev = JSON.parse(buf.slice(0, nl)) as { type: string; object: { metadata: { name: string; resourceVersion: string } } };
              buf = buf.slice(nl + 1);
              if (ev.type === 'ERROR' || ev.type === 'BOOKMARK') continue;
              seen.push(`${ev.type} ${ev.object.metadata.name}`);
              lastRV = ev.object.metadata.resourceVersion;
            }
          }
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    })();

    const create = async (agent: Agent, url: string, name: string) => {
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await request(url + LEASES, { dispatcher: agent, method: 'POST', headers: auth, body: JSON.stringify({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name } }) });
          const body = await r.body.json();
          if (r.statusCode === 201 || (r.statusCode === 409 && attempt > 0)) return r.statusCode;
          if (r.statusCode === 503 && attempt < 20) {
            await new Promise((res) => setTimeout(res, 200));
            continue;
          }
          throw new Error(`create ${name}: ${r.statusCode} ${JSON.stringify(body)}`);
        } catch (e) {
          if (attempt >= 20) throw e;
          await new Promise((res) => setTimeout(res, 200));
        }
      }
    };

    await t.test('a write through A is seen by a watch on B', async (t) => {
      await create(agentA, a.url, 'from-a');
      await waitFor(() => seen.includes('ADDED from-a'), 10_000, 'B to report the lease');
      const g = await b.call<{ metadata: { name: string } }>('GET', `${LEASES}/from-a`);
      t.equal(g.status, 200, 'B reads what A wrote');
    });

    await t.test('allocations from two api processes never collide', async (t) => {
      const mk = (agent: Agent, url: string, i: number) =>
        request(url + '/api/v1/namespaces/default/services', { dispatcher: agent, method: 'POST', headers: auth, body: JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}` }, spec: { type: 'NodePort', ports: [{ port: 80 }], selector: { app: `a${i}` } } }) }).then(async (r) => ({ status: r.statusCode, body: (await r.body.json()) as { spec: { clusterIP: string; ports: { nodePort: number }[] } } }));
      const results = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? mk(agentA, a.url, i) : mk(agentB, b.url, i))));
      t.same(results.filter((r) => r.status !== 201).map((r) => r.status), [], 'every create succeeded');
      const ips = results.map((r) => r.body.spec.clusterIP);
      const ports = results.map((r) => r.body.spec.ports[0]!.nodePort);
      t.equal(new Set(ips).size, 60, 'distinct ClusterIPs');
      t.equal(new Set(ports).size, 60, 'distinct NodePorts');
    });

    await t.test('an etcd member killed: writes and watches continue', async (t) => {
      const leader = await etcd.leader();
      const victim = (leader + 1) % 3;
      await etcd.kill(victim, 'SIGKILL');
      for (let i = 0; i < 20; i++) await create(i % 2 ? agentA : agentB, i % 2 ? a.url : b.url, `after-follower-${i}`);
      await waitFor(() => Array.from({ length: 20 }, (_, i) => `ADDED after-follower-${i}`).every((s) => seen.includes(s)), 15_000, 'B to see every write made after the follower died');
      t.pass('20 writes after killing a follower, all seen by the watch on B');
      await etcd.restart(victim);
      const l2 = await etcd.leader();
      await etcd.kill(l2, 'SIGKILL');
      const t0 = Date.now();
      for (let i = 0; i < 20; i++) await create(i % 2 ? agentA : agentB, i % 2 ? a.url : b.url, `after-leader-${i}`);
      await waitFor(() => Array.from({ length: 20 }, (_, i) => `ADDED after-leader-${i}`).every((s) => seen.includes(s)), 15_000, 'B to see every write made after the leader died');
      t.pass(`the leader killed: 20 writes done in ${Date.now() - t0} ms (election included), all seen by the watch on B`);
      const dups = seen.length - new Set(seen).size;
      t.equal(dups, 0, 'no event was delivered twice');
    });

    ac.abort();
    await watchB.catch(() => undefined);
  });
}
