/**
 * The Registry's Kubernetes semantics against a real SqliteStore in a temp directory,
 * through its public methods only: Service ClusterIP / NodePort allocation (the
 * allocation records under /registry/ranges/ are part of the persisted format, so they
 * are read directly), optimistic concurrency, server-owned metadata, generated names,
 * selectors, consistent paging, graceful pod deletion and namespace cascades.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { KubeObject, Namespace, Node, Pod, Service, ServiceSpec } from '../../client/types.js';
import { Cidr } from '../../util/ipnet.js';
import { ApiStatusError } from '../server/status.js';
import { SqliteStore } from '../store/sqlite.js';
import { ClusterIPAllocator, PortAllocator } from './allocators.js';
import { Registry } from './registry.js';
import { WatchCache } from './watchcache.js';

const SERVICE_V4 = Cidr.parse('10.96.0.0/12');
const SERVICE_V6 = Cidr.parse('fd00:10:96::/112');
const NODE_PORTS = { min: 30000, max: 32767 };
const IP_RECORDS = '/registry/ranges/clusterips/';
const PORT_RECORDS = '/registry/ranges/nodeports/';
const MERGE = 'application/merge-patch+json';

// ---------------------------------------------------------------- harness

interface Api {
  dir: string;
  store: SqliteStore;
  registry: Registry;
  close(): Promise<void>;
}

const dirs: string[] = [];
const open: Api[] = [];

afterEach(async () => {
  for (const a of open.splice(0)) await a.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'podnet-registry-'));
  dirs.push(dir);
  return dir;
}

/** A store, watch cache and registry wired as src/api/apiserver.ts does. */
async function openApi(opts: { dir?: string; dualStack?: boolean; clock?: () => number } = {}): Promise<Api> {
  const dir = opts.dir ?? tempDir();
  const store = SqliteStore.open(dir);
  const watchCache = new WatchCache(store);
  await watchCache.start();
  const clusterIPs: Partial<Record<4 | 6, ClusterIPAllocator>> = { 4: new ClusterIPAllocator(store, SERVICE_V4) };
  if (opts.dualStack) clusterIPs[6] = new ClusterIPAllocator(store, SERVICE_V6);
  const registry = new Registry({
    store,
    watchCache,
    network: { clusterIPs, primary: 4, nodePorts: new PortAllocator(store, NODE_PORTS) },
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  await registry.bootstrap();
  let closed = false;
  const api: Api = {
    dir,
    store,
    registry,
    async close() {
      if (closed) return;
      closed = true;
      watchCache.stop();
      await store.close();
    },
  };
  open.push(api);
  return api;
}

/** The ApiStatusError a call fails with (the test fails if it succeeds). */
async function apiError(p: Promise<unknown>): Promise<ApiStatusError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ApiStatusError);
    return e as ApiStatusError;
  }
  throw new Error('expected an ApiStatusError, the call succeeded');
}

const causeFields = (e: ApiStatusError): string[] => (e.details?.causes ?? []).map((c) => c.field ?? '');

async function recordKeys(api: Api, prefix: string): Promise<string[]> {
  return (await api.store.list(prefix)).kvs.map((kv) => kv.key.slice(prefix.length));
}

function service(name: string, spec: ServiceSpec = {}): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { selector: { app: name }, ports: [{ port: 80 }], ...spec } };
}

const twoPorts = (extra: Partial<{ nodePort: number }>[] = []) => [
  { name: 'http', port: 80, ...(extra[0] ?? {}) },
  { name: 'https', port: 443, ...(extra[1] ?? {}) },
];

function pod(name: string, opts: { nodeName?: string; labels?: Record<string, string>; namespace?: string } = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, ...(opts.labels ? { labels: opts.labels } : {}), ...(opts.namespace ? { namespace: opts.namespace } : {}) },
    spec: { containers: [{ name: 'c', image: 'pause' }], ...(opts.nodeName ? { nodeName: opts.nodeName } : {}) },
  };
}

async function createService(api: Api, s: Service, ns = 'default'): Promise<Service> {
  return (await api.registry.create<Service>('services', ns, s)).object;
}

const nodePortsOf = (s: Service): number[] => (s.spec?.ports ?? []).map((p) => p.nodePort).filter((p): p is number => p !== undefined);

// ---------------------------------------------------------------- ClusterIPs

describe('Registry: Service ClusterIPs', () => {
  it('allocates a ClusterIP from the service CIDR when none is given, and records it', async () => {
    const api = await openApi();
    const a = await createService(api, service('a'));
    const b = await createService(api, service('b'));
    for (const s of [a, b]) {
      const ip = s.spec!.clusterIP!;
      expect(SERVICE_V4.contains(ip)).toBe(true);
      expect(ip).not.toBe(SERVICE_V4.network);
      expect(s.spec!.clusterIPs).toEqual([ip]);
      expect(s.spec!.ipFamilies).toEqual(['IPv4']);
      expect(s.spec!.ipFamilyPolicy).toBe('SingleStack');
    }
    expect(a.spec!.clusterIP).not.toBe(b.spec!.clusterIP);
    expect((await recordKeys(api, IP_RECORDS)).sort()).toEqual([a.spec!.clusterIP, b.spec!.clusterIP].sort());
    // What get returns is what create returned.
    expect((await api.registry.get<Service>('services', 'default', 'a')).spec!.clusterIP).toBe(a.spec!.clusterIP);
  });

  it('honours a requested clusterIP (singular or plural field)', async () => {
    const api = await openApi();
    const a = await createService(api, service('a', { clusterIP: '10.96.0.10' }));
    expect(a.spec!.clusterIP).toBe('10.96.0.10');
    expect(a.spec!.clusterIPs).toEqual(['10.96.0.10']);
    const b = await createService(api, service('b', { clusterIPs: ['10.100.1.2'] }));
    expect(b.spec!.clusterIP).toBe('10.100.1.2');
    expect((await recordKeys(api, IP_RECORDS)).sort()).toEqual(['10.100.1.2', '10.96.0.10']);
  });

  it('refuses a requested clusterIP outside the service CIDR with a 422 naming the field, and stores nothing', async () => {
    const api = await openApi();
    for (const ip of ['10.95.255.254', '192.168.0.1', '10.112.0.1', '10.96.0.0', '10.111.255.255']) {
      const e = await apiError(createService(api, service('a', { clusterIP: ip })));
      expect(e.code, ip).toBe(422);
      expect(e.reason).toBe('Invalid');
      expect(causeFields(e).some((f) => f === 'spec.clusterIPs[0]' || f === 'spec.clusterIP'), `${ip}: ${causeFields(e).join(',')}`).toBe(true);
    }
    expect((await apiError(api.registry.get('services', 'default', 'a'))).code).toBe(404);
    expect(await recordKeys(api, IP_RECORDS)).toEqual([]);
    // The first and last usable addresses are fine.
    expect((await createService(api, service('first', { clusterIP: '10.96.0.1' }))).spec!.clusterIP).toBe('10.96.0.1');
    expect((await createService(api, service('last', { clusterIP: '10.111.255.254' }))).spec!.clusterIP).toBe('10.111.255.254');
  });

  it('refuses a clusterIP that is not an IP address', async () => {
    const api = await openApi();
    const e = await apiError(createService(api, service('a', { clusterIP: '10.96.0.300' })));
    expect(e.code).toBe(422);
    expect(causeFields(e)).toContain('spec.clusterIP');
  });

  it('refuses a clusterIP that another Service holds', async () => {
    const api = await openApi();
    await createService(api, service('a', { clusterIP: '10.96.0.10' }));
    const e = await apiError(createService(api, service('b', { clusterIP: '10.96.0.10' })));
    expect(e.code).toBe(422);
    expect(e.reason).toBe('Invalid');
    expect(causeFields(e).some((f) => f === 'spec.clusterIPs[0]' || f === 'spec.clusterIP')).toBe(true);
    expect(e.message).toMatch(/already allocated/);
    expect((await apiError(api.registry.get('services', 'default', 'b'))).code).toBe(404);
    // The record still belongs to the first Service.
    expect(await recordKeys(api, IP_RECORDS)).toEqual(['10.96.0.10']);
  });

  it('a failed create frees what it allocated (AlreadyExists after allocation)', async () => {
    const api = await openApi();
    await createService(api, service('a', { clusterIP: '10.96.0.10' }));
    const e = await apiError(createService(api, service('a', { clusterIP: '10.96.0.11', type: 'NodePort', ports: [{ port: 80, nodePort: 30100 }] })));
    expect(e.code).toBe(409);
    expect(e.reason).toBe('AlreadyExists');
    expect(await recordKeys(api, IP_RECORDS)).toEqual(['10.96.0.10']);
    expect(await recordKeys(api, PORT_RECORDS)).toEqual([]);
    const b = await createService(api, service('b', { clusterIP: '10.96.0.11', type: 'NodePort', ports: [{ port: 80, nodePort: 30100 }] }));
    expect(b.spec!.clusterIP).toBe('10.96.0.11');
    expect(nodePortsOf(b)).toEqual([30100]);
  });

  it('accepts a headless Service (clusterIP None) and allocates nothing', async () => {
    const api = await openApi();
    const h = await createService(api, service('h', { clusterIP: 'None' }));
    expect(h.spec!.clusterIP).toBe('None');
    expect(h.spec!.clusterIPs).toEqual(['None']);
    // Headless without ports is fine too.
    const h2 = await createService(api, { metadata: { name: 'h2' }, spec: { clusterIP: 'None', selector: { app: 'x' } } });
    expect(h2.spec!.clusterIP).toBe('None');
    expect(await recordKeys(api, IP_RECORDS)).toEqual([]);
    await api.registry.delete('services', 'default', 'h');
    expect(await recordKeys(api, IP_RECORDS)).toEqual([]);
  });

  it('gives an ExternalName Service no ClusterIP', async () => {
    const api = await openApi();
    const s = await createService(api, { metadata: { name: 'ext' }, spec: { type: 'ExternalName', externalName: 'db.example.com' } });
    expect(s.spec!.clusterIP).toBeUndefined();
    expect(s.spec!.clusterIPs).toBeUndefined();
    expect(await recordKeys(api, IP_RECORDS)).toEqual([]);
  });

  // One address, one record: the key is the canonical spelling ("FD00:10:96:0:0::50" is fd00:10:96::50).
  it('refuses a requested IP that another Service holds in a different spelling (IPv6)', async () => {
    const api = await openApi({ dualStack: true });
    await createService(api, service('a', { ipFamilies: ['IPv6'], clusterIPs: ['fd00:10:96::50'] }));
    const e = await apiError(createService(api, service('b', { ipFamilies: ['IPv6'], clusterIPs: ['fd00:10:96:0:0::50'] })));
    expect(e.code).toBe(422);
  });
});

describe('Registry: dual-stack Services', () => {
  it('SingleStack (the default) takes the primary family only', async () => {
    const api = await openApi({ dualStack: true });
    const s = await createService(api, service('a'));
    expect(s.spec!.ipFamilyPolicy).toBe('SingleStack');
    expect(s.spec!.ipFamilies).toEqual(['IPv4']);
    expect(s.spec!.clusterIPs).toHaveLength(1);
    expect(SERVICE_V4.contains(s.spec!.clusterIPs![0]!)).toBe(true);
    const v6 = await createService(api, service('b', { ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv6'] }));
    expect(v6.spec!.ipFamilies).toEqual(['IPv6']);
    expect(v6.spec!.clusterIPs).toHaveLength(1);
    expect(SERVICE_V6.contains(v6.spec!.clusterIP!)).toBe(true);
  });

  it('PreferDualStack and RequireDualStack get one IP of each family, primary first', async () => {
    const api = await openApi({ dualStack: true });
    for (const policy of ['PreferDualStack', 'RequireDualStack'] as const) {
      const s = await createService(api, service(policy.toLowerCase(), { ipFamilyPolicy: policy }));
      expect(s.spec!.ipFamilyPolicy).toBe(policy);
      expect(s.spec!.ipFamilies).toEqual(['IPv4', 'IPv6']);
      const [v4, v6] = s.spec!.clusterIPs!;
      expect(SERVICE_V4.contains(v4!)).toBe(true);
      expect(SERVICE_V6.contains(v6!)).toBe(true);
      expect(s.spec!.clusterIP).toBe(v4);
    }
    const v6first = await createService(api, service('v6first', { ipFamilyPolicy: 'RequireDualStack', ipFamilies: ['IPv6', 'IPv4'] }));
    expect(v6first.spec!.ipFamilies).toEqual(['IPv6', 'IPv4']);
    expect(SERVICE_V6.contains(v6first.spec!.clusterIPs![0]!)).toBe(true);
    expect(SERVICE_V4.contains(v6first.spec!.clusterIPs![1]!)).toBe(true);
    expect(await recordKeys(api, IP_RECORDS)).toHaveLength(6);
  });

  it('honours requested IPs of both families and frees both on delete', async () => {
    const api = await openApi({ dualStack: true });
    const s = await createService(api, service('a', { ipFamilyPolicy: 'RequireDualStack', clusterIPs: ['10.96.0.20', 'fd00:10:96::20'] }));
    expect(s.spec!.clusterIPs).toEqual(['10.96.0.20', 'fd00:10:96::20']);
    expect(s.spec!.ipFamilies).toEqual(['IPv4', 'IPv6']);
    expect((await recordKeys(api, IP_RECORDS)).sort()).toEqual(['10.96.0.20', 'fd00:10:96::20']);
    await api.registry.delete('services', 'default', 'a');
    expect(await recordKeys(api, IP_RECORDS)).toEqual([]);
  });

  it('refuses a secondary IP outside its CIDR and frees the primary it had taken', async () => {
    const api = await openApi({ dualStack: true });
    const e = await apiError(createService(api, service('a', { ipFamilyPolicy: 'RequireDualStack', clusterIPs: ['10.96.0.20', 'fd00:10:97::20'] })));
    expect(e.code).toBe(422);
    expect(causeFields(e)).toContain('spec.clusterIPs[1]');
    expect(await recordKeys(api, IP_RECORDS)).toEqual([]);
  });

  it('on a single-stack cluster: RequireDualStack is refused, PreferDualStack gets one family, IPv6 is refused', async () => {
    const api = await openApi();
    const e = await apiError(createService(api, service('req', { ipFamilyPolicy: 'RequireDualStack' })));
    expect(e.code).toBe(422);
    expect(causeFields(e)).toContain('spec.ipFamilyPolicy');
    const pref = await createService(api, service('pref', { ipFamilyPolicy: 'PreferDualStack' }));
    expect(pref.spec!.ipFamilies).toEqual(['IPv4']);
    expect(pref.spec!.clusterIPs).toHaveLength(1);
    const e6 = await apiError(createService(api, service('v6', { ipFamilies: ['IPv6'] })));
    expect(e6.code).toBe(422);
    expect(causeFields(e6)).toContain('spec.ipFamilies[0]');
    expect(await recordKeys(api, IP_RECORDS)).toEqual([pref.spec!.clusterIP]);
  });

  it('SingleStack with two families is invalid', async () => {
    const api = await openApi({ dualStack: true });
    const e = await apiError(createService(api, service('a', { ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv4', 'IPv6'] })));
    expect(e.code).toBe(422);
    expect(causeFields(e)).toContain('spec.ipFamilyPolicy');
  });

  it('an update from SingleStack to PreferDualStack adds an IPv6 ClusterIP and keeps the IPv4 one', async () => {
    const api = await openApi({ dualStack: true });
    const s = await createService(api, service('a'));
    const v4 = s.spec!.clusterIP!;
    const up = (await api.registry.patch<Service>('services', 'default', 'a', { spec: { ipFamilyPolicy: 'PreferDualStack' } }, MERGE)).object;
    expect(up.spec!.clusterIPs![0]).toBe(v4);
    expect(up.spec!.clusterIPs).toHaveLength(2);
    expect(SERVICE_V6.contains(up.spec!.clusterIPs![1]!)).toBe(true);
    expect((await recordKeys(api, IP_RECORDS)).sort()).toEqual([...up.spec!.clusterIPs!].sort());
  });
});

// ---------------------------------------------------------------- NodePorts

describe('Registry: NodePorts', () => {
  it('allocates distinct NodePorts in the range for 200 NodePort Services with 2 ports each', async () => {
    const api = await openApi();
    const created: Service[] = [];
    for (let batch = 0; batch < 4; batch++) {
      const names = Array.from({ length: 50 }, (_, i) => `np-${batch * 50 + i}`);
      created.push(...(await Promise.all(names.map((n) => createService(api, service(n, { type: 'NodePort', ports: twoPorts() }))))));
    }
    const ports = created.flatMap(nodePortsOf);
    expect(ports).toHaveLength(400);
    expect(new Set(ports).size).toBe(400);
    for (const p of ports) {
      expect(p).toBeGreaterThanOrEqual(NODE_PORTS.min);
      expect(p).toBeLessThanOrEqual(NODE_PORTS.max);
    }
    const ips = created.map((s) => s.spec!.clusterIP);
    expect(new Set(ips).size).toBe(200);
    expect((await recordKeys(api, PORT_RECORDS)).map(Number).sort((a, b) => a - b)).toEqual([...ports].sort((a, b) => a - b));
    // What is stored is what create returned.
    const listed = (await api.registry.list<Service>('services', { namespace: 'default' })).items;
    expect(listed.flatMap(nodePortsOf).sort()).toEqual([...ports].sort());
  }, 15_000);

  it('allocates NodePorts for LoadBalancer Services, none for ClusterIP ones', async () => {
    const api = await openApi();
    const lb = await createService(api, service('lb', { type: 'LoadBalancer', ports: twoPorts() }));
    expect(nodePortsOf(lb)).toHaveLength(2);
    expect(lb.spec!.healthCheckNodePort).toBeUndefined();
    const c = await createService(api, service('c', { ports: twoPorts() }));
    expect(nodePortsOf(c)).toEqual([]);
    expect(await recordKeys(api, PORT_RECORDS)).toHaveLength(2);
  });

  it('honours a requested nodePort, refuses a duplicate and refuses one outside the range', async () => {
    const api = await openApi();
    const a = await createService(api, service('a', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }));
    expect(nodePortsOf(a)).toEqual([30080]);
    const dup = await apiError(createService(api, service('b', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] })));
    expect(dup.code).toBe(422);
    expect(dup.reason).toBe('Invalid');
    expect(causeFields(dup)).toContain('spec.ports[0].nodePort');
    for (const p of [29999, 32768]) {
      const e = await apiError(createService(api, service('c', { type: 'NodePort', ports: [{ port: 80, nodePort: p }] })));
      expect(e.code, String(p)).toBe(422);
      expect(causeFields(e)).toContain('spec.ports[0].nodePort');
    }
    const high = await apiError(createService(api, service('d', { type: 'NodePort', ports: [{ port: 80, nodePort: 70000 }] })));
    expect(high.code).toBe(422);
    expect(causeFields(high)).toContain('spec.ports[0].nodePort');
    // The second port's nodePort is taken: the first one it had allocated is freed again.
    const partial = await apiError(createService(api, service('e', { type: 'NodePort', ports: twoPorts([{ nodePort: 30081 }, { nodePort: 30080 }]) })));
    expect(causeFields(partial)).toContain('spec.ports[1].nodePort');
    expect(await recordKeys(api, PORT_RECORDS)).toEqual(['30080']);
    expect((await recordKeys(api, IP_RECORDS)).length).toBe(1);
  });

  it('refuses a nodePort on a ClusterIP Service and the same nodePort twice for one protocol', async () => {
    const api = await openApi();
    const e = await apiError(createService(api, service('a', { ports: [{ port: 80, nodePort: 30080 }] })));
    expect(e.code).toBe(422);
    expect(causeFields(e)).toContain('spec.ports[0].nodePort');
    const twice = await apiError(createService(api, service('b', { type: 'NodePort', ports: twoPorts([{ nodePort: 30090 }, { nodePort: 30090 }]) })));
    expect(twice.code).toBe(422);
    expect(await recordKeys(api, PORT_RECORDS)).toEqual([]);
    // One nodePort for TCP and UDP of the same port number is allowed (as DNS does).
    const dns = await createService(api, service('dns', { type: 'NodePort', ports: [{ name: 'dns-udp', port: 53, protocol: 'UDP', nodePort: 30053 }, { name: 'dns-tcp', port: 53, protocol: 'TCP', nodePort: 30053 }] }));
    expect(nodePortsOf(dns)).toEqual([30053, 30053]);
    expect(await recordKeys(api, PORT_RECORDS)).toEqual(['30053']);
    await api.registry.delete('services', 'default', 'dns');
    expect(await recordKeys(api, PORT_RECORDS)).toEqual([]);
  });

  it('allocates a healthCheckNodePort for LoadBalancer + externalTrafficPolicy Local only', async () => {
    const api = await openApi();
    const local = await createService(api, service('local', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', ports: twoPorts() }));
    const hc = local.spec!.healthCheckNodePort!;
    expect(hc).toBeGreaterThanOrEqual(NODE_PORTS.min);
    expect(hc).toBeLessThanOrEqual(NODE_PORTS.max);
    expect(nodePortsOf(local)).not.toContain(hc);
    expect(await recordKeys(api, PORT_RECORDS)).toContain(String(hc));
    const cluster = await createService(api, service('cluster', { type: 'LoadBalancer', externalTrafficPolicy: 'Cluster' }));
    expect(cluster.spec!.healthCheckNodePort).toBeUndefined();
    const np = await createService(api, service('np', { type: 'NodePort', externalTrafficPolicy: 'Local' }));
    expect(np.spec!.healthCheckNodePort).toBeUndefined();
    // A requested one is honoured; a taken one is refused.
    const want = await createService(api, service('want', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000 }));
    expect(want.spec!.healthCheckNodePort).toBe(32000);
    const taken = await apiError(createService(api, service('taken', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000 })));
    expect(taken.code).toBe(422);
    expect(causeFields(taken)).toContain('spec.healthCheckNodePort');
    // Deleting frees it with the nodePorts.
    await api.registry.delete('services', 'default', 'local');
    expect(await recordKeys(api, PORT_RECORDS)).not.toContain(String(hc));
  });

  // Kubernetes still allocates the nodePorts a user gave when allocateLoadBalancerNodePorts is false.
  it('claims a requested nodePort of a LoadBalancer with allocateLoadBalancerNodePorts=false', async () => {
    const api = await openApi();
    const lb = await createService(api, service('lb', { type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, ports: [{ port: 80, nodePort: 30555 }] }));
    expect(nodePortsOf(lb)).toEqual([30555]);
    expect(await recordKeys(api, PORT_RECORDS)).toEqual(['30555']);
    const e = await apiError(createService(api, service('np', { type: 'NodePort', ports: [{ port: 80, nodePort: 30555 }] })));
    expect(e.code).toBe(422);
  });

  it('allocates no nodePorts for a LoadBalancer with allocateLoadBalancerNodePorts=false', async () => {
    const api = await openApi();
    const lb = await createService(api, service('lb', { type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, ports: twoPorts() }));
    expect(nodePortsOf(lb)).toEqual([]);
    expect(await recordKeys(api, PORT_RECORDS)).toEqual([]);
  });
});

// ---------------------------------------------------------------- allocation lifecycle

describe('Registry: allocation lifecycle', () => {
  it('delete frees the ClusterIP and NodePorts: a new Service can request them', async () => {
    const api = await openApi();
    const spec: ServiceSpec = { clusterIP: '10.96.5.5', type: 'NodePort', ports: twoPorts([{ nodePort: 30001 }, { nodePort: 30002 }]) };
    await createService(api, service('a', spec));
    expect(await recordKeys(api, IP_RECORDS)).toEqual(['10.96.5.5']);
    expect(await recordKeys(api, PORT_RECORDS)).toEqual(['30001', '30002']);
    const gone = await api.registry.delete<Service>('services', 'default', 'a');
    expect(gone.metadata.name).toBe('a');
    expect(await recordKeys(api, IP_RECORDS)).toEqual([]);
    expect(await recordKeys(api, PORT_RECORDS)).toEqual([]);
    const b = await createService(api, service('b', spec));
    expect(b.spec!.clusterIP).toBe('10.96.5.5');
    expect(nodePortsOf(b)).toEqual([30001, 30002]);
  });

  it('an update that omits clusterIP and nodePorts keeps them (PUT and merge patch)', async () => {
    const api = await openApi();
    const a = await createService(api, service('a', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', ports: twoPorts() }));
    const ip = a.spec!.clusterIP!;
    const ports = nodePortsOf(a);
    const hc = a.spec!.healthCheckNodePort!;
    const records = async () => ({ ips: await recordKeys(api, IP_RECORDS), ports: (await recordKeys(api, PORT_RECORDS)).sort() });
    const before = await records();

    // PUT of a spec without any allocated field (as `kubectl replace` of the original manifest).
    const put = (await api.registry.update<Service>('services', 'default', 'a', {
      metadata: { name: 'a', resourceVersion: a.metadata.resourceVersion, labels: { tier: 'web' } },
      spec: { type: 'LoadBalancer', externalTrafficPolicy: 'Local', selector: { app: 'a' }, ports: twoPorts() },
    })).object;
    expect(put.metadata.labels).toEqual({ tier: 'web' });
    expect(put.spec!.clusterIP).toBe(ip);
    expect(put.spec!.clusterIPs).toEqual([ip]);
    expect(nodePortsOf(put)).toEqual(ports);
    expect(put.spec!.healthCheckNodePort).toBe(hc);
    expect(await records()).toEqual(before);

    // Reordering the ports keeps each port's nodePort.
    const reordered = (await api.registry.update<Service>('services', 'default', 'a', {
      metadata: { name: 'a' },
      spec: { type: 'LoadBalancer', externalTrafficPolicy: 'Local', selector: { app: 'a' }, ports: [twoPorts()[1]!, twoPorts()[0]!] },
    })).object;
    expect(reordered.spec!.ports!.map((p) => [p.port, p.nodePort])).toEqual([
      [443, ports[1]],
      [80, ports[0]],
    ]);

    // A merge patch of unrelated fields.
    const patched = (await api.registry.patch<Service>('services', 'default', 'a', { spec: { selector: { app: 'b' } } }, MERGE)).object;
    expect(patched.spec!.clusterIP).toBe(ip);
    expect(patched.spec!.healthCheckNodePort).toBe(hc);
    expect(await records()).toEqual(before);
  });

  it('refuses to change the ClusterIP of an existing Service', async () => {
    const api = await openApi();
    const a = await createService(api, service('a', { clusterIP: '10.96.0.7' }));
    const e = await apiError(api.registry.update('services', 'default', 'a', { ...a, spec: { ...a.spec, clusterIP: '10.96.0.8', clusterIPs: ['10.96.0.8'] } }));
    expect(e.code).toBe(422);
    expect(causeFields(e)).toContain('spec.clusterIPs[0]');
    expect(await recordKeys(api, IP_RECORDS)).toEqual(['10.96.0.7']);
  });

  it('an update that adds a nodePort request claims it, a taken one is refused and nothing changes', async () => {
    const api = await openApi();
    await createService(api, service('other', { type: 'NodePort', ports: [{ port: 80, nodePort: 30500 }] }));
    const a = await createService(api, service('a', { type: 'NodePort', ports: [{ port: 80 }] }));
    const old = nodePortsOf(a)[0]!;
    const e = await apiError(api.registry.update('services', 'default', 'a', { ...a, spec: { ...a.spec, ports: [{ port: 80, nodePort: 30500 }] } }));
    expect(e.code).toBe(422);
    expect(nodePortsOf(await api.registry.get<Service>('services', 'default', 'a'))).toEqual([old]);
    const moved = (await api.registry.update<Service>('services', 'default', 'a', { ...a, spec: { ...a.spec, ports: [{ port: 80, nodePort: 30501 }] } })).object;
    expect(nodePortsOf(moved)).toEqual([30501]);
    // The old one is freed, the new one recorded.
    expect((await recordKeys(api, PORT_RECORDS)).sort()).toEqual(['30500', '30501']);
  });

  it('changing type from NodePort to ClusterIP frees the nodePorts', async () => {
    const api = await openApi();
    const a = await createService(api, service('a', { type: 'NodePort', ports: twoPorts([{ nodePort: 30010 }, {}]) }));
    const ports = nodePortsOf(a);
    expect(ports).toHaveLength(2);
    const c = (await api.registry.update<Service>('services', 'default', 'a', {
      metadata: { name: 'a', resourceVersion: a.metadata.resourceVersion },
      spec: { ...a.spec, type: 'ClusterIP', externalTrafficPolicy: undefined, ports: twoPorts() },
    })).object;
    expect(c.spec!.type).toBe('ClusterIP');
    expect(nodePortsOf(c)).toEqual([]);
    expect(c.spec!.clusterIP).toBe(a.spec!.clusterIP);
    expect(await recordKeys(api, PORT_RECORDS)).toEqual([]);
    // Another Service can take them now.
    const b = await createService(api, service('b', { type: 'NodePort', ports: [{ port: 80, nodePort: 30010 }] }));
    expect(nodePortsOf(b)).toEqual([30010]);
    // And back to NodePort allocates fresh ones.
    const back = (await api.registry.patch<Service>('services', 'default', 'a', { spec: { type: 'NodePort' } }, MERGE)).object;
    expect(nodePortsOf(back)).toHaveLength(2);
    expect(nodePortsOf(back)).not.toContain(30010);
    expect(await recordKeys(api, PORT_RECORDS)).toHaveLength(3);
  });

  // dropTypeDependentFields, as kube-apiserver: `kubectl patch -p '{"spec":{"type":"ClusterIP"}}'` on a NodePort Service works.
  it('a merge patch of only type NodePort -> ClusterIP drops and frees the nodePorts', async () => {
    const api = await openApi();
    await createService(api, service('a', { type: 'NodePort', ports: twoPorts() }));
    const c = (await api.registry.patch<Service>('services', 'default', 'a', { spec: { type: 'ClusterIP' } }, MERGE)).object;
    expect(nodePortsOf(c)).toEqual([]);
    expect(await recordKeys(api, PORT_RECORDS)).toEqual([]);
  });

  it('a merge patch of type ClusterIP -> ExternalName drops and frees the ClusterIP', async () => {
    const api = await openApi();
    await createService(api, service('a'));
    const ext = (await api.registry.patch<Service>('services', 'default', 'a', { spec: { type: 'ExternalName', externalName: 'db.example.com' } }, MERGE)).object;
    expect(ext.spec!.clusterIP).toBeUndefined();
    expect(await recordKeys(api, IP_RECORDS)).toEqual([]);
  });

  it('an explicit downgrade (SingleStack, primary IP and family only) frees the secondary IP', async () => {
    const api = await openApi({ dualStack: true });
    const a = await createService(api, service('a', { ipFamilyPolicy: 'RequireDualStack' }));
    const [v4, v6] = a.spec!.clusterIPs!;
    const single = (await api.registry.update<Service>('services', 'default', 'a', { ...a, spec: { ...a.spec, ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv4'], clusterIPs: [v4!] } })).object;
    expect(single.spec!.clusterIPs).toEqual([v4]);
    expect(await recordKeys(api, IP_RECORDS)).toEqual([v4]);
    // The freed IPv6 address can be requested by another Service.
    const b = await createService(api, service('b', { ipFamilies: ['IPv6'], clusterIPs: [v6!] }));
    expect(b.spec!.clusterIP).toBe(v6);
  });

  // trimFieldsForDualStackDowngrade, as kube-apiserver: SingleStack keeps the primary address and family.
  it('downgrading a dual-stack Service to SingleStack keeps the primary IP and frees the secondary', async () => {
    const api = await openApi({ dualStack: true });
    const a = await createService(api, service('a', { ipFamilyPolicy: 'RequireDualStack' }));
    const single = (await api.registry.patch<Service>('services', 'default', 'a', { spec: { ipFamilyPolicy: 'SingleStack' } }, MERGE)).object;
    expect(single.spec!.clusterIPs).toEqual([a.spec!.clusterIPs![0]]);
    expect(single.spec!.ipFamilies).toEqual(['IPv4']);
    expect(await recordKeys(api, IP_RECORDS)).toEqual([a.spec!.clusterIPs![0]]);
  });

  it('a PUT that omits the allocated values but changes nothing writes nothing', async () => {
    const api = await openApi();
    const a = await createService(api, service('a', { type: 'NodePort', ports: twoPorts() }));
    const { clusterIP: _ip, clusterIPs: _ips, ...spec } = a.spec!;
    const ports = spec.ports!.map(({ nodePort: _np, ...p }) => p);
    const again = (await api.registry.update<Service>('services', 'default', 'a', { ...a, spec: { ...spec, ports } })).object;
    expect(again.metadata.resourceVersion).toBe(a.metadata.resourceVersion);
    expect(again.spec!.clusterIPs).toEqual(a.spec!.clusterIPs);
    expect(nodePortsOf(again)).toEqual(nodePortsOf(a));
  });

  it('changing externalTrafficPolicy Local -> Cluster frees the healthCheckNodePort', async () => {
    const api = await openApi();
    const a = await createService(api, service('a', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' }));
    const hc = a.spec!.healthCheckNodePort!;
    const { healthCheckNodePort: _hc, ...rest } = a.spec!;
    const c = (await api.registry.update<Service>('services', 'default', 'a', { ...a, spec: { ...rest, externalTrafficPolicy: 'Cluster' } })).object;
    expect(c.spec!.healthCheckNodePort).toBeUndefined();
    expect(await recordKeys(api, PORT_RECORDS)).not.toContain(String(hc));
    expect((await recordKeys(api, PORT_RECORDS)).sort()).toEqual(nodePortsOf(c).map(String).sort());
  });

  it('allocations survive a restart: a new Registry on the same directory refuses the taken values', async () => {
    const dir = tempDir();
    const api1 = await openApi({ dir, dualStack: true });
    const a = await createService(api1, service('a', { ipFamilyPolicy: 'RequireDualStack', clusterIPs: ['10.96.9.9', 'fd00:10:96::99'], type: 'NodePort', ports: [{ port: 80, nodePort: 30999 }] }));
    const auto = await createService(api1, service('auto', { type: 'NodePort' }));
    await api1.close();

    const api2 = await openApi({ dir, dualStack: true });
    const ipTaken = await apiError(createService(api2, service('b', { clusterIP: '10.96.9.9' })));
    expect(ipTaken.code).toBe(422);
    const v6Taken = await apiError(createService(api2, service('b', { ipFamilies: ['IPv6'], clusterIPs: ['fd00:10:96::99'] })));
    expect(v6Taken.code).toBe(422);
    const portTaken = await apiError(createService(api2, service('b', { type: 'NodePort', ports: [{ port: 80, nodePort: 30999 }] })));
    expect(portTaken.code).toBe(422);
    const autoIP = await apiError(createService(api2, service('b', { clusterIP: auto.spec!.clusterIP! })));
    expect(autoIP.code).toBe(422);
    const autoPort = await apiError(createService(api2, service('b', { type: 'NodePort', ports: [{ port: 80, nodePort: nodePortsOf(auto)[0]! }] })));
    expect(autoPort.code).toBe(422);
    expect(causeFields(autoPort)).toContain('spec.ports[0].nodePort');
    // The stored Service still holds them, and deleting it in the new process frees them.
    expect((await api2.registry.get<Service>('services', 'default', 'a')).spec!.clusterIPs).toEqual(a.spec!.clusterIPs);
    await api2.registry.delete('services', 'default', 'a');
    const b = await createService(api2, service('b', { ipFamilyPolicy: 'RequireDualStack', clusterIPs: ['10.96.9.9', 'fd00:10:96::99'], type: 'NodePort', ports: [{ port: 80, nodePort: 30999 }] }));
    expect(b.spec!.clusterIPs).toEqual(['10.96.9.9', 'fd00:10:96::99']);
  });

  it('a dry-run create allocates nothing', async () => {
    const api = await openApi();
    const r = await api.registry.create<Service>('services', 'default', service('a', { clusterIP: '10.96.0.5', type: 'NodePort', ports: [{ port: 80, nodePort: 30005 }] }), { dryRun: true });
    expect(r.object.metadata.name).toBe('a');
    expect(await recordKeys(api, IP_RECORDS)).toEqual([]);
    expect(await recordKeys(api, PORT_RECORDS)).toEqual([]);
    expect((await apiError(api.registry.get('services', 'default', 'a'))).code).toBe(404);
  });
});

// ---------------------------------------------------------------- generic semantics

describe('Registry: metadata and concurrency', () => {
  it('sets uid, creationTimestamp, generation and resourceVersion; ignores client values', async () => {
    const t = Date.parse('2031-02-03T04:05:06.789Z');
    const api = await openApi({ clock: () => t });
    const p = (await api.registry.create<Pod>('pods', 'default', { ...pod('p'), metadata: { name: 'p', uid: 'mine', creationTimestamp: '2000-01-01T00:00:00Z', generation: 7, resourceVersion: '12345' } })).object;
    expect(p.metadata.uid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(p.metadata.creationTimestamp).toBe('2031-02-03T04:05:06Z');
    expect(p.metadata.generation).toBe(1);
    expect(p.metadata.namespace).toBe('default');
    expect(Number(p.metadata.resourceVersion)).toBeGreaterThan(0);
    expect(p.metadata.resourceVersion).not.toBe('12345');
    expect(p.apiVersion).toBe('v1');
    expect(p.kind).toBe('Pod');
    expect(p.status?.phase).toBe('Pending');
    const q = (await api.registry.create<Pod>('pods', 'default', pod('q'))).object;
    expect(q.metadata.uid).not.toBe(p.metadata.uid);
    expect(Number(q.metadata.resourceVersion)).toBeGreaterThan(Number(p.metadata.resourceVersion));
  });

  it('generation counts spec changes only; uid and creationTimestamp cannot be changed by an update', async () => {
    const api = await openApi();
    const s = await createService(api, service('a'));
    const labelled = (await api.registry.patch<Service>('services', 'default', 'a', { metadata: { labels: { x: 'y' } } }, MERGE)).object;
    expect(labelled.metadata.generation).toBe(1);
    const changed = (await api.registry.patch<Service>('services', 'default', 'a', { spec: { selector: { app: 'other' } } }, MERGE)).object;
    expect(changed.metadata.generation).toBe(2);
    const status = (await api.registry.patch<Service>('services', 'default', 'a', { status: { loadBalancer: { ingress: [{ ip: '192.0.2.1' }] } } }, MERGE, { subresource: 'status' })).object;
    expect(status.metadata.generation).toBe(2);
    expect(status.status?.loadBalancer?.ingress).toEqual([{ ip: '192.0.2.1' }]);
    const put = (await api.registry.update<Service>('services', 'default', 'a', { ...status, metadata: { ...status.metadata, creationTimestamp: '2000-01-01T00:00:00Z' } })).object;
    expect(put.metadata.creationTimestamp).toBe(s.metadata.creationTimestamp);
    const wrongUid = await apiError(api.registry.update('services', 'default', 'a', { ...put, metadata: { ...put.metadata, uid: 'not-the-uid' } }));
    expect(wrongUid.code).toBe(409);
  });

  it('status and spec are separate: a main-resource update keeps status, a status update keeps spec', async () => {
    const api = await openApi();
    const p = (await api.registry.create<Pod>('pods', 'default', pod('p'))).object;
    const st = (await api.registry.update<Pod>('pods', 'default', 'p', { ...p, spec: { ...p.spec!, hostname: 'ignored' }, status: { phase: 'Running', podIP: '10.244.1.5' } }, { subresource: 'status' })).object;
    expect(st.status?.podIP).toBe('10.244.1.5');
    expect(st.spec?.hostname).toBeUndefined();
    const main = (await api.registry.update<Pod>('pods', 'default', 'p', { ...st, metadata: { ...st.metadata, labels: { a: 'b' } }, status: { phase: 'Failed' } })).object;
    expect(main.metadata.labels).toEqual({ a: 'b' });
    expect(main.status?.phase).toBe('Running');
  });

  it('an update with a stale resourceVersion is a 409 Conflict; the current one or none succeeds', async () => {
    const api = await openApi();
    const v1 = (await api.registry.create<Pod>('pods', 'default', pod('p'))).object;
    const v2 = (await api.registry.update<Pod>('pods', 'default', 'p', { ...v1, metadata: { ...v1.metadata, labels: { v: '2' } } })).object;
    expect(Number(v2.metadata.resourceVersion)).toBeGreaterThan(Number(v1.metadata.resourceVersion));
    const e = await apiError(api.registry.update('pods', 'default', 'p', { ...v1, metadata: { ...v1.metadata, labels: { v: 'stale' } } }));
    expect(e.code).toBe(409);
    expect(e.reason).toBe('Conflict');
    expect((await api.registry.get<Pod>('pods', 'default', 'p')).metadata.labels).toEqual({ v: '2' });
    // A patch carrying a stale resourceVersion is a precondition too.
    const pe = await apiError(api.registry.patch('pods', 'default', 'p', { metadata: { resourceVersion: v1.metadata.resourceVersion, labels: { v: 'x' } } }, MERGE));
    expect(pe.code).toBe(409);
    // Without a resourceVersion the write is unconditional.
    const { resourceVersion: _rv, ...meta } = v1.metadata;
    const v3 = (await api.registry.update<Pod>('pods', 'default', 'p', { ...v1, metadata: { ...meta, labels: { v: '3' } } })).object;
    expect(v3.metadata.labels).toEqual({ v: '3' });
    // Delete preconditions.
    const de = await apiError(api.registry.delete('pods', 'default', 'p', { preconditions: { resourceVersion: v2.metadata.resourceVersion! } }));
    expect(de.code).toBe(409);
    const due = await apiError(api.registry.delete('pods', 'default', 'p', { preconditions: { uid: 'someone-else' } }));
    expect(due.code).toBe(409);
    await api.registry.delete('pods', 'default', 'p', { preconditions: { resourceVersion: v3.metadata.resourceVersion! } });
    expect((await apiError(api.registry.get('pods', 'default', 'p'))).code).toBe(404);
  });

  it('a stale Service update is refused before it allocates anything', async () => {
    const api = await openApi();
    const v1 = await createService(api, service('a', { type: 'NodePort' }));
    await api.registry.patch('services', 'default', 'a', { metadata: { labels: { a: 'b' } } }, MERGE);
    const e = await apiError(api.registry.update('services', 'default', 'a', { ...v1, spec: { ...v1.spec, ports: [{ port: 80, nodePort: 31111 }] } }));
    expect(e.code).toBe(409);
    expect(await recordKeys(api, PORT_RECORDS)).not.toContain('31111');
  });

  it('concurrent patches without resourceVersion all land (GuaranteedUpdate retries)', async () => {
    const api = await openApi();
    await api.registry.create('pods', 'default', pod('p'));
    await Promise.all(Array.from({ length: 10 }, (_, i) => api.registry.patch('pods', 'default', 'p', { metadata: { labels: { [`k${i}`]: 'v' } } }, MERGE)));
    expect(Object.keys((await api.registry.get<Pod>('pods', 'default', 'p')).metadata.labels ?? {}).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `k${i}`).sort());
  });

  it('generateName: a random suffix, distinct names; a create without name or generateName is 422', async () => {
    const api = await openApi();
    const names = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const p = (await api.registry.create<Pod>('pods', 'default', { ...pod(''), metadata: { generateName: 'web-' } })).object;
      expect(p.metadata.name).toMatch(/^web-[a-z0-9]{5}$/);
      expect(p.metadata.generateName).toBe('web-');
      names.add(p.metadata.name!);
    }
    expect(names.size).toBe(20);
    expect((await api.registry.list('pods', { namespace: 'default' })).items).toHaveLength(20);
    const e = await apiError(api.registry.create('pods', 'default', { ...pod(''), metadata: {} }));
    expect(e.code).toBe(422);
    expect(causeFields(e)).toContain('metadata.name');
    // A name wins over generateName.
    const named = (await api.registry.create<Pod>('pods', 'default', { ...pod(''), metadata: { name: 'fixed', generateName: 'web-' } })).object;
    expect(named.metadata.name).toBe('fixed');
  });

  it('create refuses duplicates, a missing namespace, and a namespace mismatch', async () => {
    const api = await openApi();
    await api.registry.create('pods', 'default', pod('p'));
    const dup = await apiError(api.registry.create('pods', 'default', pod('p')));
    expect(dup.code).toBe(409);
    expect(dup.reason).toBe('AlreadyExists');
    const nons = await apiError(api.registry.create('pods', 'nowhere', pod('p')));
    expect(nons.code).toBe(404);
    const mismatch = await apiError(api.registry.create('pods', 'default', pod('q', { namespace: 'kube-system' })));
    expect(mismatch.code).toBe(400);
  });
});

describe('Registry: selectors', () => {
  async function seed(api: Api): Promise<void> {
    const pods: [string, Record<string, string>, string | undefined][] = [
      ['web-0', { app: 'web', tier: 'front' }, 'node-a'],
      ['web-1', { app: 'web', tier: 'front', canary: 'true' }, 'node-b'],
      ['db-0', { app: 'db', tier: 'back' }, 'node-a'],
      ['batch-0', { app: 'batch' }, undefined],
    ];
    for (const [name, labels, nodeName] of pods) await api.registry.create('pods', 'default', pod(name, { labels, ...(nodeName ? { nodeName } : {}) }));
    await api.registry.create('pods', 'kube-system', pod('web-9', { labels: { app: 'web' }, nodeName: 'node-a' }));
  }
  const names = (l: { items: KubeObject[] }) => l.items.map((o) => o.metadata.name).sort();

  it('filters by labelSelector (=, !=, in, notin, exists, !exists, and combinations)', async () => {
    const api = await openApi();
    await seed(api);
    const list = (labelSelector: string) => api.registry.list('pods', { namespace: 'default', labelSelector });
    expect(names(await list('app=web'))).toEqual(['web-0', 'web-1']);
    expect(names(await list('app==web'))).toEqual(['web-0', 'web-1']);
    expect(names(await list('app!=web'))).toEqual(['batch-0', 'db-0']);
    expect(names(await list('tier in (front, back)'))).toEqual(['db-0', 'web-0', 'web-1']);
    expect(names(await list('tier notin (front)'))).toEqual(['batch-0', 'db-0']);
    expect(names(await list('canary'))).toEqual(['web-1']);
    expect(names(await list('!canary'))).toEqual(['batch-0', 'db-0', 'web-0']);
    expect(names(await list('app=web,!canary'))).toEqual(['web-0']);
    expect(names(await list('app=none'))).toEqual([]);
    // Across namespaces.
    expect(names(await api.registry.list('pods', { labelSelector: 'app=web' }))).toEqual(['web-0', 'web-1', 'web-9']);
    for (const bad of ['app in web', '=web', 'a b c', 'app=-x']) {
      const e = await apiError(list(bad));
      expect(e.code, bad).toBe(400);
    }
  });

  it('filters by fieldSelector (spec.nodeName for pods, metadata.name, metadata.namespace)', async () => {
    const api = await openApi();
    await seed(api);
    expect(names(await api.registry.list('pods', { fieldSelector: 'spec.nodeName=node-a' }))).toEqual(['db-0', 'web-0', 'web-9']);
    expect(names(await api.registry.list('pods', { namespace: 'default', fieldSelector: 'spec.nodeName=node-a' }))).toEqual(['db-0', 'web-0']);
    expect(names(await api.registry.list('pods', { namespace: 'default', fieldSelector: 'spec.nodeName=' }))).toEqual(['batch-0']);
    expect(names(await api.registry.list('pods', { namespace: 'default', fieldSelector: 'spec.nodeName!=node-a' }))).toEqual(['batch-0', 'web-1']);
    expect(names(await api.registry.list('pods', { fieldSelector: 'metadata.name=web-1' }))).toEqual(['web-1']);
    expect(names(await api.registry.list('pods', { fieldSelector: 'metadata.namespace=kube-system' }))).toEqual(['web-9']);
    expect(names(await api.registry.list('pods', { fieldSelector: 'spec.nodeName=node-a', labelSelector: 'tier=front' }))).toEqual(['web-0']);
    expect(names(await api.registry.list('namespaces', { fieldSelector: 'metadata.name=kube-system' }))).toEqual(['kube-system']);
    const e = await apiError(api.registry.list('pods', { fieldSelector: 'spec.hostname=x' }));
    expect(e.code).toBe(400);
  });
});

describe('Registry: paging', () => {
  it('limit + continue returns every item once, from one snapshot, whatever is written between pages', async () => {
    const api = await openApi();
    for (let i = 0; i < 10; i++) await api.registry.create('pods', 'default', pod(`p${i}`));
    const first = await api.registry.list('pods', { namespace: 'default', limit: 4 });
    expect(first.items.map((p) => p.metadata.name)).toEqual(['p0', 'p1', 'p2', 'p3']);
    expect(first.metadata.continue).toBeTruthy();
    const rv = first.metadata.resourceVersion;

    // Writes between pages: a new pod that sorts into a later page, a delete and an update of later items.
    await api.registry.create('pods', 'default', pod('p45'));
    await api.registry.delete('pods', 'default', 'p6');
    await api.registry.patch('pods', 'default', 'p7', { metadata: { labels: { changed: 'yes' } } }, MERGE);

    const seen = [...first.items];
    let cont = first.metadata.continue;
    let pages = 1;
    while (cont) {
      const page = await api.registry.list('pods', { namespace: 'default', limit: 4, continue: cont });
      expect(page.metadata.resourceVersion).toBe(rv);
      expect(page.items.length).toBeLessThanOrEqual(4);
      seen.push(...page.items);
      cont = page.metadata.continue;
      pages++;
    }
    expect(pages).toBe(3);
    expect(seen.map((p) => p.metadata.name)).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8', 'p9']);
    expect(seen.find((p) => p.metadata.name === 'p7')!.metadata.labels).toBeUndefined();
    // A new list sees the writes.
    const now = await api.registry.list('pods', { namespace: 'default' });
    expect(now.items.map((p) => p.metadata.name)).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p45', 'p5', 'p7', 'p8', 'p9']);
    expect(now.metadata.continue).toBeUndefined();
  });

  it('paging with a selector fills pages with matching items; the last page has no continue', async () => {
    const api = await openApi();
    for (let i = 0; i < 12; i++) await api.registry.create('pods', 'default', pod(`p${String(i).padStart(2, '0')}`, { labels: { even: String(i % 2 === 0) } }));
    const got: string[] = [];
    let cont: string | undefined;
    let pages = 0;
    do {
      const page = await api.registry.list('pods', { namespace: 'default', labelSelector: 'even=true', limit: 2, ...(cont ? { continue: cont } : {}) });
      got.push(...page.items.map((p) => p.metadata.name!));
      cont = page.metadata.continue;
      pages++;
    } while (cont && pages < 10);
    expect(got).toEqual(['p00', 'p02', 'p04', 'p06', 'p08', 'p10']);
    expect(pages).toBeLessThanOrEqual(4);
    // Exactly `limit` items in the store: no continue token.
    const all = await api.registry.list('pods', { namespace: 'default', limit: 12 });
    expect(all.items).toHaveLength(12);
    expect(all.metadata.continue).toBeUndefined();
  });

  it('a continue token older than the compacted revision is 410 Expired; a bad token is 400', async () => {
    const api = await openApi();
    for (let i = 0; i < 5; i++) await api.registry.create('pods', 'default', pod(`p${i}`));
    const first = await api.registry.list('pods', { namespace: 'default', limit: 2 });
    await api.registry.patch('pods', 'default', 'p3', { metadata: { labels: { a: 'b' } } }, MERGE);
    await api.store.compact(await api.store.currentRevision());
    const e = await apiError(api.registry.list('pods', { namespace: 'default', limit: 2, continue: first.metadata.continue! }));
    expect(e.code).toBe(410);
    expect(e.reason).toBe('Expired');
    const bad = await apiError(api.registry.list('pods', { namespace: 'default', limit: 2, continue: 'not-a-token' }));
    expect(bad.code).toBe(400);
    const neg = await apiError(api.registry.list('pods', { limit: -1 }));
    expect(neg.code).toBe(400);
  });
});

describe('Registry: Node pod subnets', () => {
  const CIDRS = '/registry/ranges/podcidrs/';
  const node = (name: string, podCIDR?: string): Node => ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, ...(podCIDR ? { spec: { podCIDR, podCIDRs: [podCIDR] } } : {}) });
  const claim = (api: Api, name: string, cidr: string) => api.registry.patch<Node>('nodes', undefined, name, { spec: { podCIDR: cidr, podCIDRs: [cidr] } }, MERGE);

  it('a subnet is held by one Node: a second claim is 422 naming the holder', async () => {
    const api = await openApi();
    await api.registry.create('nodes', undefined, node('n1', '10.244.1.0/24'));
    await api.registry.create('nodes', undefined, node('n2'));
    expect(await recordKeys(api, CIDRS)).toEqual(['10.244.1.0/24']);
    const e = await apiError(claim(api, 'n2', '10.244.1.0/24'));
    expect(e.code).toBe(422);
    expect(e.message).toContain('already allocated to node n1');
    expect((await api.registry.get<Node>('nodes', undefined, 'n2')).spec?.podCIDR).toBeUndefined();
    const e2 = await apiError(api.registry.create('nodes', undefined, node('n3', '10.244.1.0/24')));
    expect(e2.code).toBe(422);
    await expect(api.registry.get('nodes', undefined, 'n3')).rejects.toThrow();
  });

  it('20 Nodes racing for 4 subnets: each subnet ends up with exactly one Node', async () => {
    const api = await openApi();
    const grid = ['10.244.0.0/24', '10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24'];
    for (let i = 0; i < 20; i++) await api.registry.create('nodes', undefined, node(`n${i}`));
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => claim(api, `n${i}`, grid[i % 4]!)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(4);
    const held = (await api.registry.list<Node>('nodes')).items.map((n) => n.spec?.podCIDR).filter(Boolean);
    expect(held.sort()).toEqual(grid);
    expect(await recordKeys(api, CIDRS)).toEqual(grid);
  });

  it('a subnet is fixed once set, and freed when its Node is deleted', async () => {
    const api = await openApi();
    await api.registry.create('nodes', undefined, node('n1', '10.244.7.0/24'));
    const e = await apiError(claim(api, 'n1', '10.244.8.0/24'));
    expect(e.code).toBe(422);
    expect(e.message).toContain('may not change podCIDR');
    // Status writes (heartbeats) leave the claim alone.
    await api.registry.patch('nodes', undefined, 'n1', { status: { conditions: [{ type: 'Ready', status: 'True' }] } }, MERGE, { subresource: 'status' });
    expect(await recordKeys(api, CIDRS)).toEqual(['10.244.7.0/24']);
    await api.registry.delete('nodes', undefined, 'n1');
    expect(await recordKeys(api, CIDRS)).toEqual([]);
    await api.registry.create('nodes', undefined, node('n2', '10.244.7.0/24'));
    expect(await recordKeys(api, CIDRS)).toEqual(['10.244.7.0/24']);
  });

  it('dual-stack subnets are one record each, in canonical form', async () => {
    const api = await openApi();
    await api.registry.create('nodes', undefined, { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'FD00:10:244:1::/64'] } });
    expect((await recordKeys(api, CIDRS)).sort()).toEqual(['10.244.1.0/24', 'fd00:10:244:1::/64']);
    const e = await apiError(api.registry.create('nodes', undefined, { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n2' }, spec: { podCIDR: '10.244.2.0/24', podCIDRs: ['10.244.2.0/24', 'fd00:10:244:1:0::/64'] } }));
    expect(e.code).toBe(422);
    expect(await recordKeys(api, CIDRS)).toHaveLength(2);
  });
});

describe('Registry: streamed lists', () => {
  it('listJSON hands over store pages of one snapshot: every item once, as list() would serve it', async () => {
    const api = await openApi();
    const n = 1234; // three store pages
    for (let i = 0; i < n; i++) await api.registry.create('pods', 'default', pod(`p${String(i).padStart(4, '0')}`, { labels: { even: String(i % 2 === 0) } }));
    const expected = await api.registry.list('pods', { namespace: 'default' });
    const pages: string[][] = [];
    const meta = await api.registry.listJSON('pods', { namespace: 'default' }, async (items) => {
      pages.push(items);
      // A write while the list is being read is not part of it.
      if (pages.length === 1) await api.registry.create('pods', 'default', pod('p9999'));
    });
    expect(pages.length).toBe(3);
    const items = pages.flat().map((t) => JSON.parse(t) as Pod);
    expect(items).toEqual(expected.items);
    expect(meta.metadata.resourceVersion).toBe(expected.metadata.resourceVersion);
    expect(meta.kind).toBe('PodList');
    // With a selector (objects decoded to test it) and a limit: the same as list().
    const opts = { namespace: 'default', labelSelector: 'even=true', limit: 300 };
    const selected: string[] = [];
    const sel = await api.registry.listJSON('pods', opts, async (page) => void selected.push(...page));
    const viaList = await api.registry.list('pods', opts);
    expect(selected.map((t) => JSON.parse(t) as Pod)).toEqual(viaList.items);
    expect(sel.metadata.continue).toBeTruthy();
  });
});

describe('Registry: pod deletion', () => {
  it('a pod bound to a node gets a deletionTimestamp; an unbound one is deleted at once', async () => {
    let t = Date.parse('2031-01-01T00:00:00Z');
    const api = await openApi({ clock: () => t });
    await api.registry.create('pods', 'default', pod('bound', { nodeName: 'node-a' }));
    await api.registry.create('pods', 'default', pod('free'));
    t += 5_000;
    const bound = await api.registry.delete<Pod>('pods', 'default', 'bound');
    expect(bound.metadata.deletionTimestamp).toBe('2031-01-01T00:00:35Z');
    expect(bound.metadata.deletionGracePeriodSeconds).toBe(30);
    const stored = await api.registry.get<Pod>('pods', 'default', 'bound');
    expect(stored.metadata.deletionTimestamp).toBe('2031-01-01T00:00:35Z');

    await api.registry.delete('pods', 'default', 'free');
    expect((await apiError(api.registry.get('pods', 'default', 'free'))).code).toBe(404);

    // A second delete with a longer grace does not postpone it; a shorter one brings it forward.
    const again = await api.registry.delete<Pod>('pods', 'default', 'bound', { gracePeriodSeconds: 60 });
    expect(again.metadata.deletionTimestamp).toBe('2031-01-01T00:00:35Z');
    const sooner = await api.registry.delete<Pod>('pods', 'default', 'bound', { gracePeriodSeconds: 10 });
    expect(sooner.metadata.deletionTimestamp).toBe('2031-01-01T00:00:15Z');
    expect(sooner.metadata.deletionGracePeriodSeconds).toBe(10);
    // An update cannot clear the deletionTimestamp.
    const upd = (await api.registry.patch<Pod>('pods', 'default', 'bound', { metadata: { deletionTimestamp: null, labels: { x: 'y' } } }, MERGE)).object;
    expect(upd.metadata.deletionTimestamp).toBe('2031-01-01T00:00:15Z');
    // Grace 0 removes it.
    await api.registry.delete('pods', 'default', 'bound', { gracePeriodSeconds: 0 });
    expect((await apiError(api.registry.get('pods', 'default', 'bound'))).code).toBe(404);
  });

  it('uses the pod terminationGracePeriodSeconds; terminal pods are deleted at once', async () => {
    const t = Date.parse('2031-01-01T00:00:00Z');
    const api = await openApi({ clock: () => t });
    const p = pod('short', { nodeName: 'node-a' });
    p.spec!.terminationGracePeriodSeconds = 3;
    await api.registry.create('pods', 'default', p);
    expect((await api.registry.delete<Pod>('pods', 'default', 'short')).metadata.deletionTimestamp).toBe('2031-01-01T00:00:03Z');
    const done = (await api.registry.create<Pod>('pods', 'default', pod('done', { nodeName: 'node-a' }))).object;
    await api.registry.update('pods', 'default', 'done', { ...done, status: { phase: 'Succeeded' } }, { subresource: 'status' });
    await api.registry.delete('pods', 'default', 'done');
    expect((await apiError(api.registry.get('pods', 'default', 'done'))).code).toBe(404);
    expect((await apiError(api.registry.delete('pods', 'default', 'done'))).code).toBe(404);
  });
});

describe('Registry: namespaces', () => {
  it('bootstrap creates the system namespaces once; they cannot be deleted', async () => {
    const api = await openApi();
    await api.registry.bootstrap();
    const ns = (await api.registry.list<Namespace>('namespaces')).items;
    expect(ns.map((n) => n.metadata.name).sort()).toEqual(['default', 'kube-node-lease', 'kube-public', 'kube-system']);
    expect(ns.every((n) => n.status?.phase === 'Active')).toBe(true);
    const e = await apiError(api.registry.delete('namespaces', undefined, 'default'));
    expect(e.code).toBe(403);
  });

  it('deleting a namespace deletes everything in it (bound pods too) and frees Service allocations', async () => {
    const api = await openApi();
    await api.registry.create('namespaces', undefined, { metadata: { name: 'team' } });
    await api.registry.create('pods', 'team', pod('bound', { nodeName: 'node-a' }));
    await api.registry.create('pods', 'team', pod('free'));
    await createService(api, service('svc', { clusterIP: '10.96.3.3', type: 'NodePort', ports: [{ port: 80, nodePort: 30303 }] }), 'team');
    await api.registry.create('endpointslices', 'team', { metadata: { name: 'svc-1' }, addressType: 'IPv4', endpoints: [{ addresses: ['10.244.0.5'] }] });
    await api.registry.create('leases', 'team', { metadata: { name: 'l' }, spec: { holderIdentity: 'x' } });
    // Something in another namespace is left alone.
    await api.registry.create('pods', 'default', pod('keep'));

    await api.registry.delete('namespaces', undefined, 'team');
    for (const r of ['pods', 'services', 'endpointslices', 'leases'] as const) {
      expect((await api.registry.list(r, { namespace: 'team' })).items, r).toEqual([]);
    }
    const nsGone = await api.registry.get<Namespace>('namespaces', undefined, 'team').catch((e: unknown) => e);
    if (nsGone instanceof ApiStatusError) expect(nsGone.code).toBe(404);
    else expect((nsGone as Namespace).status?.phase).toBe('Terminating');
    expect(await recordKeys(api, IP_RECORDS)).toEqual([]);
    expect(await recordKeys(api, PORT_RECORDS)).toEqual([]);
    expect((await api.registry.get('pods', 'default', 'keep')).metadata.name).toBe('keep');
    // The freed values are available again.
    const again = await createService(api, service('svc', { clusterIP: '10.96.3.3', type: 'NodePort', ports: [{ port: 80, nodePort: 30303 }] }));
    expect(again.spec!.clusterIP).toBe('10.96.3.3');
  });
});
