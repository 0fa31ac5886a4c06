// The IPVS proxy mode's state against a real kernel (a "node" namespace in the UML guest):
// full sync, idempotence, partial syncs that touch only the changed Services, drift repair,
// adoption by a restarted agent (stale virtual servers recognised through the dummy device
// and the NODEPORTS set), the full sync after a failure, and a cleanup that removes exactly
// podnet's objects while a foreign IPVS service, ipset and chain survive everything.
import t from 'tap';
import type { EndpointSlice, Service, ServiceSpec } from '../src/client/types.js';
import { Ipvs } from '../src/kernel/ipvs.js';
import { createIpvsMode } from '../src/proxy/ipvs/index.js';
import { buildSnapshot } from '../src/proxy/snapshot.js';
import type { ProxyNodeConfig } from '../src/proxy/types.js';
import { silentLogger } from '../src/util/log.js';
import { Scope, sh } from '../netns-tests/lib/harness.js';
import { ipvsadm, lines, vmSkipReason } from './lib.js';

const skip = await vmSkipReason();

const node: ProxyNodeConfig = { nodeName: 'n1', family: 4, nodeIPs: ['198.18.0.1'], clusterCIDR: '10.244.0.0/16' };

const svc = (name: string, spec: ServiceSpec): Service => ({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name }, spec }) as Service;
const slice = (service: string, ips: string[], port = 8080): EndpointSlice =>
  ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: 'default', name: `${service}-x`, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], nodeName: 'n1', conditions: { ready: true } })),
    ports: [{ name: 'http', port }],
  }) as EndpointSlice;

const web = svc('web', { type: 'NodePort', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, nodePort: 30080 }] });
const api = svc('api', { clusterIP: '10.96.0.20', sessionAffinity: 'ClientIP', ports: [{ name: 'http', port: 80 }] });

async function state(ns: Parameters<typeof ipvsadm>[0]) {
  const addrs = String((await sh(ns, 'ip', ['-4', '-o', 'addr', 'show'])).stdout)
    .split('\n')
    .filter((l) => l.includes('podnet-ipvs0'))
    .map((l) => l.split(/\s+/)[3])
    .sort();
  const sets = String((await sh(ns, 'ipset', ['list', '-n'])).stdout).split('\n').filter(Boolean).sort();
  const rules = String((await sh(ns, 'iptables-save', [])).stdout)
    .split('\n')
    .filter((l) => l.includes('PODNET-IPVS') || l.includes('FOREIGN'))
    .filter((l) => !l.startsWith('#'));
  return { addrs, sets, rules };
}

// One node namespace for the whole story below (top-level tests, run in order).
const scope = new Scope('ipvsm');
t.teardown(() => scope.cleanup());
const env = skip ? undefined : await setup();
const foreign = 'TCP 192.0.2.1:80 wrr\n-> 192.0.2.100:80 Masq 1 0 0';

async function setup() {
  const ns = await scope.netns('node');
  const ipvs = await Ipvs.open(ns);
  t.teardown(() => ipvs.close());
  const mode = createIpvsMode({ netns: ns, log: silentLogger() });
  t.teardown(() => mode.close());
  const restarted = createIpvsMode({ netns: ns, log: silentLogger() });
  t.teardown(() => restarted.close());
  // Someone else's IPVS service, ipset and chain: podnet must never touch them.
  await ipvs.addService({ family: 4, protocol: 'TCP', address: '192.0.2.1', port: 80, scheduler: 'wrr' });
  await ipvs.addDest({ family: 4, protocol: 'TCP', address: '192.0.2.1', port: 80 }, { address: '192.0.2.100', port: 80 });
  await sh(ns, 'ipset', ['create', 'FOREIGN-SET', 'hash:ip']);
  await sh(ns, 'iptables', ['-t', 'nat', '-N', 'FOREIGN']);
  await sh(ns, 'iptables', ['-t', 'nat', '-A', 'PREROUTING', '-j', 'FOREIGN']);
  return { ns, mode, restarted };
}

const s1 = buildSnapshot([web, api], [slice('web', ['10.244.1.5', '10.244.1.6']), slice('api', ['10.244.1.7'])], node);
const s2 = buildSnapshot([web, api], [slice('web', ['10.244.1.5', '10.244.1.8']), slice('api', ['10.244.1.7'])], node);
const extra = svc('extra', { clusterIP: '10.96.0.30', ports: [{ name: 'http', port: 80 }] });
const s3 = buildSnapshot([web, api, extra], [slice('web', ['10.244.1.5', '10.244.1.8']), slice('api', ['10.244.1.7'])], node);
const s4 = buildSnapshot([api], [slice('api', ['10.244.1.7'])], node);

t.test('full sync: virtual servers, VIPs, sets, chains; a second one changes nothing', { skip }, async (t) => {
  const { ns, mode } = env!;
  const r1 = await mode.sync([s1], undefined);
  t.same(r1, { servicesWritten: 2, servicesRemoved: 0, full: true }, 'first sync is full');
  t.equal(
    await ipvsadm(ns),
    lines(`
      TCP 10.96.0.10:80 rr
      -> 10.244.1.5:8080 Masq 1 0 0
      -> 10.244.1.6:8080 Masq 1 0 0
      TCP 10.96.0.20:80 rr persistent 10800
      -> 10.244.1.7:8080 Masq 1 0 0
      TCP 192.0.2.1:80 wrr
      -> 192.0.2.100:80 Masq 1 0 0
      TCP 198.18.0.1:30080 rr
      -> 10.244.1.5:8080 Masq 1 0 0
      -> 10.244.1.6:8080 Masq 1 0 0
    `),
    'virtual servers for the ClusterIPs and the NodePort; the foreign one as it was',
  );
  const st = await state(ns);
  t.same(st.addrs, ['10.96.0.10/32', '10.96.0.20/32'], 'the ClusterIPs are on podnet-ipvs0');
  t.same(
    st.sets,
    ['FOREIGN-SET', 'PODNET-IPVS-CLUSTER-4', 'PODNET-IPVS-DROP-4', 'PODNET-IPVS-LOOPBACK-4', 'PODNET-IPVS-MASQ-4', 'PODNET-IPVS-NODEPORTS-4', 'PODNET-IPVS-REJECT-4', 'PODNET-IPVS-SERVED-4', 'PODNET-IPVS-VIPS-4'],
    'podnet sets next to the foreign one',
  );
  t.ok(st.rules.includes('-A PREROUTING -j PODNET-IPVS-SERVICES') && st.rules.includes('-A INPUT -j PODNET-IPVS-FILTER'), 'jumps into podnet chains');
  t.equal(String((await sh(ns, 'sysctl', ['-n', 'net.ipv4.vs.conntrack'])).stdout).trim(), '1', 'net.ipv4.vs.conntrack=1 (masquerade of IPVS traffic)');

  await mode.sync([s1], undefined);
  t.equal(mode.lastSync()?.ops, 0, 'a second full sync changes nothing');
  const jumps = (await state(ns)).rules.filter((l) => l === '-A PREROUTING -j PODNET-IPVS-SERVICES');
  t.equal(jumps.length, 1, 'the jumps exist once');
});

t.test('a partial sync touches only the changed Service; the next full sync repairs drift', { skip }, async (t) => {
  const { ns, mode } = env!;
  await sh(ns, 'ipvsadm', ['-e', '-t', '10.96.0.20:80', '-r', '10.244.1.7:8080', '-m', '-w', '5']);
  const r2 = await mode.sync([s2], new Set(['default/web:http']));
  t.same(r2, { servicesWritten: 1, servicesRemoved: 0, full: false }, 'a partial sync writes one service port');
  t.same(mode.lastSync()?.byOp, { 'add-entry': 1, 'add-dest': 2, 'del-dest': 2, 'del-entry': 1 }, 'only web: its real servers and its hairpin entries');
  t.match(await ipvsadm(ns), /TCP 10\.96\.0\.10:80 rr\n-> 10\.244\.1\.5:8080 Masq 1 0 0\n-> 10\.244\.1\.8:8080 Masq 1 0 0/, 'web has its new endpoints');
  t.match(await ipvsadm(ns), /-> 10\.244\.1\.7:8080 Masq 5 0 0/, 'the drift on api was not touched by the partial sync');
  await mode.sync([s2], undefined);
  t.same(mode.lastSync()?.byOp, { 'update-dest': 1 }, 'the full sync repairs exactly the drift');
  t.match(await ipvsadm(ns), /-> 10\.244\.1\.7:8080 Masq 1 0 0/, 'weight back to 1');
});

t.test('a failed sync makes the next one full, which repairs what the failure left', { skip }, async (t) => {
  const { ns, mode } = env!;
  await sh(ns, 'ip', ['link', 'del', 'podnet-ipvs0']);
  await t.rejects(mode.sync([s3], new Set(['default/extra:http'])), { code: 'PODNET_LINK_NOT_FOUND' }, 'the dummy device is gone: the partial sync fails');
  const r3 = await mode.sync([s3], new Set(['default/extra:http']));
  t.equal(r3.full, true, 'the sync after a failure is full, even when asked for a partial one');
  t.same((await state(ns)).addrs, ['10.96.0.10/32', '10.96.0.20/32', '10.96.0.30/32'], 'the dummy device and all VIPs are back');
});

t.test('a restarted agent adopts the installed state; stale podnet virtual servers go', { skip }, async (t) => {
  const { ns, restarted } = env!;
  await restarted.sync([s3], undefined);
  t.equal(restarted.lastSync()?.ops, 0, 'the restarted mode adopts the installed state without changes');
  await restarted.sync([s4], undefined);
  t.same(restarted.lastSync()?.byOp, { 'del-service': 3, 'del-vip': 2, 'del-entry': 11 }, 'web (ClusterIP + NodePort, found through NODEPORTS) and extra (and its REJECT entry: no endpoints) are removed');
  t.equal(
    await ipvsadm(ns),
    lines(`
      TCP 10.96.0.20:80 rr persistent 10800
      -> 10.244.1.7:8080 Masq 1 0 0
      ${foreign}
    `),
    'only api and the foreign service are left',
  );
});

t.test("cleanup removes exactly podnet's objects, twice is fine", { skip }, async (t) => {
  const { ns, mode, restarted } = env!;
  await restarted.cleanup();
  t.equal(await ipvsadm(ns), foreign, 'cleanup leaves the foreign service alone');
  const after = await state(ns);
  t.same(after.addrs, [], 'no VIPs left');
  t.not((await sh(ns, 'ip', ['link', 'show', 'podnet-ipvs0'], { reject: false })).exitCode, 0, 'podnet-ipvs0 is gone');
  t.same(after.sets, ['FOREIGN-SET'], 'only the foreign ipset is left');
  t.same(after.rules, [':FOREIGN - [0:0]', '-A PREROUTING -j FOREIGN'], 'only the foreign chain and its jump are left');
  await restarted.cleanup();
  t.pass('a second cleanup is fine');
  await mode.cleanup();
  t.equal(await ipvsadm(ns), foreign, 'the first instance cleaning up too changes nothing more');
});
