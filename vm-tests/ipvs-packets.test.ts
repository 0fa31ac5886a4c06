// Real packets through the IPVS mode, in the UML guest. Topology (all namespaces):
//
//   client 198.18.0.2 ──veth── node 198.18.0.1 (IPVS mode, podnet-ipvs0 with the VIPs)
//                                bridge podnet0 10.244.1.1/24, fd00:10:244:1::1/64
//                                  ├─ s1 10.244.1.11   (servers answer "<name> <peer address>")
//                                  ├─ s2 10.244.1.12
//                                  └─ s3 10.244.1.13
//
// The node's bridge is set up as a Kubernetes node's: br_netfilter on (bridge-nf-call-iptables)
// and hairpin mode on the pod ports.
//
// TCP to a ClusterIP is spread over the three servers and masqueraded for a client outside
// the cluster CIDR; a pod's own traffic keeps its address except when it reaches itself
// (hairpin, masqueraded); affinity sticks; a VIP without endpoints and an unserved VIP port
// refuse at once; NodePort with externalTrafficPolicy Local reaches only the local endpoint
// and keeps the client address; UDP and IPv6 work; an endpoint removed by a partial sync
// gets no more connections.
import t from 'tap';
import type { EndpointSlice, Service, ServiceSpec } from '../src/client/types.js';
import type { NetNS } from '../src/kernel/netns.js';
import { setSysctl } from '../src/kernel/sysctl.js';
import { createIpvsMode } from '../src/proxy/ipvs/index.js';
import { buildSnapshot } from '../src/proxy/snapshot.js';
import type { ProxyNodeConfig, ProxySnapshot } from '../src/proxy/types.js';
import { silentLogger } from '../src/util/log.js';
import { Scope, sh } from '../netns-tests/lib/harness.js';
import { connectMany, startServer, tally, udpAsk, vmSkipReason } from './lib.js';

const skip = await vmSkipReason();

const node4: ProxyNodeConfig = { nodeName: 'n1', family: 4, nodeIPs: ['198.18.0.1'], clusterCIDR: '10.244.0.0/16' };
const node6: ProxyNodeConfig = { nodeName: 'n1', family: 6, nodeIPs: ['fd00:198:18::1'], clusterCIDR: 'fd00:10:244::/56' };
const servers = ['s1', 's2', 's3'] as const;
const ip4 = (i: number) => `10.244.1.${11 + i}`;
const ip6 = (i: number) => `fd00:10:244:1::${11 + i}`;

const svc = (name: string, spec: ServiceSpec): Service => ({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name }, spec }) as Service;
function slice(service: string, family: 4 | 6, eps: { i: number; node?: string }[], port: { name: string; port: number; protocol?: 'TCP' | 'UDP' }): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: 'default', name: `${service}-${family}`, labels: { 'kubernetes.io/service-name': service } },
    addressType: family === 4 ? 'IPv4' : 'IPv6',
    endpoints: eps.map((e) => ({ addresses: [family === 4 ? ip4(e.i) : ip6(e.i)], nodeName: e.node ?? 'n1', conditions: { ready: true } })),
    ports: [port],
  } as EndpointSlice;
}

const http = { name: 'http', port: 8080 };
const all = [{ i: 0 }, { i: 1 }, { i: 2 }];

const services = [
  svc('web', { clusterIPs: ['10.96.0.10', 'fd00:10:96::a'], ports: [{ name: 'http', port: 80 }] }),
  svc('sticky', { clusterIP: '10.96.0.11', sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80 }] }),
  svc('empty', { clusterIP: '10.96.0.12', ports: [{ name: 'http', port: 80 }] }),
  svc('local', { type: 'NodePort', externalTrafficPolicy: 'Local', clusterIP: '10.96.0.13', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }),
  svc('cluster', { type: 'NodePort', clusterIP: '10.96.0.14', ports: [{ name: 'http', port: 80, nodePort: 30081 }] }),
  svc('dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }),
];

function snapshots(webEps = all): ProxySnapshot[] {
  const slices = [
    slice('web', 4, webEps, http),
    slice('web', 6, webEps, http),
    slice('sticky', 4, all, http),
    // Only s1 runs on this node as far as the local Service's slice says.
    slice('local', 4, [{ i: 0 }, { i: 1, node: 'n2' }, { i: 2, node: 'n2' }], http),
    slice('cluster', 4, all, http),
    slice('dns', 4, [{ i: 0 }], { name: 'dns', port: 5353, protocol: 'UDP' }),
  ];
  return [buildSnapshot(services, slices, node4), buildSnapshot(services, slices, node6)];
}

async function topology(scope: Scope): Promise<{ client: NetNS; node: NetNS; pods: NetNS[] }> {
  const [client, node, ...pods] = await Promise.all([scope.netns('client'), scope.netns('node'), ...servers.map((s) => scope.netns(s))]);
  const n = scope.netlink(node!);
  const c = scope.netlink(client!);
  await n.links.ensure({ kind: 'veth', name: 'eth-client', up: true, peer: { name: 'eth0', netns: client! } });
  await n.addrs.ensure('eth-client', '198.18.0.1/24');
  await n.addrs.ensure('eth-client', 'fd00:198:18::1/64', { nodad: true });
  await c.links.setUp('eth0');
  await c.addrs.ensure('eth0', '198.18.0.2/24');
  await c.addrs.ensure('eth0', 'fd00:198:18::2/64', { nodad: true });
  await c.routes.ensure({ dst: 'default', via: '198.18.0.1' });
  await c.routes.ensure({ dst: 'default', via: 'fd00:198:18::1' });
  await n.links.ensure({ kind: 'bridge', name: 'podnet0', up: true });
  await n.addrs.ensure('podnet0', '10.244.1.1/24');
  await n.addrs.ensure('podnet0', 'fd00:10:244:1::1/64', { nodad: true });
  for (const [i, pod] of pods.entries()) {
    await n.links.ensure({ kind: 'veth', name: `pn-${servers[i]}`, master: 'podnet0', up: true, peer: { name: 'eth0', netns: pod } });
    const p = scope.netlink(pod);
    await p.links.setUp('eth0');
    await p.addrs.ensure('eth0', `${ip4(i)}/24`);
    await p.addrs.ensure('eth0', `${ip6(i)}/64`, { nodad: true });
    await p.routes.ensure({ dst: 'default', via: '10.244.1.1' });
    await p.routes.ensure({ dst: 'default', via: 'fd00:10:244:1::1' });
  }
  // A Kubernetes node's bridge: bridged traffic through netfilter (a pod's reply to a pod on
  // the same bridge must meet the conntrack / IPVS entry of the Service connection), and
  // hairpin on the pod ports (kubelet's hairpin-veth: the de-masqueraded reply of a pod that
  // reached itself goes back out the port it came in on).
  setSysctl(node!, 'net.bridge.bridge-nf-call-iptables', '1');
  setSysctl(node!, 'net.bridge.bridge-nf-call-ip6tables', '1');
  for (const s of servers) await sh(node!, 'bridge', ['link', 'set', 'dev', `pn-${s}`, 'hairpin', 'on']);
  setSysctl(node!, 'net.ipv4.ip_forward', '1');
  setSysctl(node!, 'net.ipv6.conf.all.forwarding', '1');
  return { client: client!, node: node!, pods };
}

// One topology for every case below (each a top-level test, run in order).
const scope = new Scope('ipvsp');
t.teardown(() => scope.cleanup());
const env = skip ? undefined : await setup();

async function setup() {
  const net = await topology(scope);
  await Promise.all(net.pods.map((p, i) => startServer(scope, p, servers[i]!)));
  const mode = createIpvsMode({ netns: net.node, log: silentLogger() });
  t.teardown(() => mode.close());
  const t0 = Date.now();
  await mode.sync(snapshots(), undefined);
  t.comment(`full sync of ${services.length} Services, both families: ${Date.now() - t0} ms`);
  return { ...net, mode };
}

t.test('a second full sync of both families changes nothing (addresses read back as planned)', { skip }, async (t) => {
  const { mode } = env!;
  await mode.sync(snapshots(), undefined);
  t.same(mode.lastSync()?.byOp, {}, 'no operation: IPv4 and IPv6 VIPs, set members and virtual servers all match');
});

t.test('ClusterIP: spread over the three servers, masqueraded for a client outside the cluster CIDR', { skip }, async (t) => {
  const { client } = env!;
  const answers = await connectMany(client, '10.96.0.10', 80, 100);
  const counts = tally(answers);
  t.comment(`100 connections: ${JSON.stringify(counts)}`);
  t.same(Object.keys(counts).sort(), ['s1', 's2', 's3'], 'every connection answered by one of the servers');
  for (const s of servers) t.ok((counts[s] ?? 0) >= 1, `${s} got at least one connection`);
  t.ok(answers.every((a) => a.endsWith(' 10.244.1.1')), 'the servers see the node address (masquerade)');
});

t.test('a pod keeps its address; reaching itself through the VIP (hairpin) is masqueraded', { skip }, async (t) => {
  const { pods } = env!;
  const answers = await connectMany(pods[1]!, '10.96.0.10', 80, 30);
  t.same(Object.keys(tally(answers)).sort(), ['s1', 's2', 's3'], 'all three servers reached from s2');
  t.ok(
    answers.filter((a) => !a.startsWith('s2 ')).every((a) => a.endsWith(` ${ip4(1)}`)),
    'the other servers see s2 itself (no masquerade inside the cluster CIDR)',
  );
  t.ok(
    answers.filter((a) => a.startsWith('s2 ')).every((a) => a === 's2 10.244.1.1'),
    's2 reaching itself sees the node address (hairpin masquerade)',
  );
});

t.test('session affinity: one client, one server', { skip }, async (t) => {
  const { client } = env!;
  const counts = tally(await connectMany(client, '10.96.0.11', 80, 20));
  t.equal(Object.keys(counts).length, 1, `all 20 connections on one server: ${JSON.stringify(counts)}`);
});

t.test('refused, not black-holed: a VIP without endpoints, an unserved VIP port', { skip }, async (t) => {
  const { client, node } = env!;
  const t1 = Date.now();
  t.same(await connectMany(client, '10.96.0.12', 80, 2), ['ECONNREFUSED', 'ECONNREFUSED'], 'no endpoints: connection refused (podnet filter: TCP reset)');
  t.same(await connectMany(client, '10.96.0.10', 81, 2), ['ECONNREFUSED', 'ECONNREFUSED'], 'a port of the VIP without a virtual server: refused (podnet filter)');
  t.same(await connectMany(node, '10.96.0.12', 80, 1), ['ECONNREFUSED'], 'from the node itself too');
  t.ok(Date.now() - t1 < 10_000, `refusals are immediate (${Date.now() - t1} ms for 5 attempts)`);
});

t.test('NodePort: externalTrafficPolicy Local reaches only the local endpoint and keeps the client address', { skip }, async (t) => {
  const { client } = env!;
  const local = await connectMany(client, '198.18.0.1', 30080, 10);
  t.same([...new Set(local)], ['s1 198.18.0.2'], 'only s1, which sees the client');
  const cluster = await connectMany(client, '198.18.0.1', 30081, 30);
  t.same(Object.keys(tally(cluster)).sort(), ['s1', 's2', 's3'], 'externalTrafficPolicy Cluster: all three');
  t.ok(cluster.every((a) => a.endsWith(' 10.244.1.1')), 'and masqueraded');
});

t.test('UDP', { skip }, async (t) => {
  const { client } = env!;
  t.equal(await udpAsk(client, '10.96.0.53', 53), 's1 10.244.1.1', 'a datagram to the ClusterIP reaches s1 and the answer comes back');
});

t.test('IPv6 ClusterIP', { skip }, async (t) => {
  const { client } = env!;
  const answers = await connectMany(client, 'fd00:10:96::a', 80, 30);
  t.same(Object.keys(tally(answers)).sort(), ['s1', 's2', 's3'], 'spread over the three servers');
  t.ok(answers.every((a) => a.endsWith(' fd00:10:244:1::1')), 'masqueraded to the node address');
});

t.test('an endpoint removed by a partial sync gets no new connections', { skip }, async (t) => {
  const { client, mode } = env!;
  const r = await mode.sync(snapshots([{ i: 0 }, { i: 1 }]), new Set(['default/web:http']));
  t.equal(r.full, false, 'partial sync');
  const counts = tally(await connectMany(client, '10.96.0.10', 80, 20));
  t.same(Object.keys(counts).sort(), ['s1', 's2'], `s3 gets nothing: ${JSON.stringify(counts)}`);
});

t.test('after cleanup the VIPs are gone', { skip }, async (t) => {
  const { client, mode } = env!;
  await mode.cleanup();
  const [a] = await connectMany(client, '10.96.0.10', 80, 1);
  t.notOk(/^s\d /.test(a ?? ''), `no server answers any more (${a})`);
});
