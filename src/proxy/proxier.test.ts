import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { KubeClient } from '../client/index.js';
import { RESOURCES } from '../client/resources.js';
import type { EndpointSlice, Service } from '../client/types.js';
import { FakeApiServer } from '../client/testing/fake-apiserver.js';
import type { ConntrackFilter } from '../kernel/conntrack.js';
import { silentLogger } from '../util/log.js';
import { ProxyMetrics } from './metrics.js';
import type { HealthCheckService, ServiceHealthServer } from './healthcheck.js';
import { Proxier, TRIGGER_TIME_ANNOTATION } from './proxier.js';
import type { ProxierOptions } from './proxier.js';
import type { ProxyMode, ProxySnapshot, SyncResult } from './types.js';

class FakeMode implements ProxyMode {
  readonly name = 'nftables' as const;
  calls: { changed: string[] | undefined; ports: Map<string, number>[] }[] = [];
  failNext = false;
  async sync(snaps: readonly ProxySnapshot[], changed: ReadonlySet<string> | undefined): Promise<SyncResult> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('kernel said no');
    }
    this.calls.push({ changed: changed ? [...changed].sort() : undefined, ports: snaps.map((s) => new Map([...s.services].map(([k, p]) => [k, p.clusterEndpoints.length]))) });
    return { servicesWritten: changed?.size ?? snaps[0]!.services.size, servicesRemoved: 0, full: !changed };
  }
  async cleanup(): Promise<void> {}
}

const svc = (name: string, ports: Service['spec'] = {}): Service => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'default', resourceVersion: '1' },
  spec: { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }], ...ports },
});
const slice = (name: string, service: string, ips: string[], extra: Partial<EndpointSlice['metadata']> = {}, protocol: 'TCP' | 'UDP' = 'TCP'): EndpointSlice => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': service }, ...extra },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol }],
  endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: 'n1' })),
});

interface Env {
  s: FakeApiServer;
  mode: FakeMode;
  proxier: Proxier;
  metrics: ProxyMetrics;
  registry: Registry;
  conntrack: ConntrackFilter[];
  stop: () => Promise<void>;
}

let env: Env | undefined;
afterEach(async () => {
  await env?.stop();
  env = undefined;
});

async function setup(seed: { services?: Service[]; slices?: EndpointSlice[] } = {}, syncMs = 60_000, fullSyncMs = 3_600_000, more: Partial<ProxierOptions> = {}): Promise<Env> {
  const s = await FakeApiServer.start();
  for (const x of seed.services ?? []) s.put(RESOURCES.services, x);
  for (const x of seed.slices ?? []) s.put(RESOURCES.endpointslices, x);
  const client = new KubeClient(s.config());
  const mode = new FakeMode();
  const registry = new Registry();
  const metrics = new ProxyMetrics(registry);
  const conntrack: ConntrackFilter[] = [];
  const proxier = new Proxier({
    sources: { services: client.resource(RESOURCES.services), slices: client.resource(RESOURCES.endpointslices) },
    mode,
    nodes: [{ nodeName: 'n1', family: 4, nodeIPs: ['198.18.0.1'], clusterCIDR: '10.244.0.0/16' }],
    minSyncMs: 0,
    syncMs,
    fullSyncMs,
    log: silentLogger(),
    metrics,
    conntrack: async (f) => {
      conntrack.push(f);
      return 1;
    },
    ...more,
  });
  const ac = new AbortController();
  const running = proxier.run(ac.signal);
  const e: Env = {
    s,
    mode,
    proxier,
    metrics,
    registry,
    conntrack,
    stop: async () => {
      ac.abort();
      await running;
      await client.close();
      await s.close();
    },
  };
  env = e;
  return e;
}

const until = async (pred: () => boolean, what: string) => {
  for (let i = 0; i < 200; i++) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
};

describe('Proxier', () => {
  it('keeps the endpoint count and the health check ports right through partial, failed and full syncs', async () => {
    const updates: Map<number, HealthCheckService>[] = [];
    const health = { update: async (m: ReadonlyMap<number, HealthCheckService>) => void updates.push(new Map(m)) } as unknown as ServiceHealthServer;
    const lb = svc('lb', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 30999, clusterIP: '10.96.0.11', clusterIPs: ['10.96.0.11'], ports: [{ name: 'http', port: 80, protocol: 'TCP', nodePort: 30080 }] });
    const lbSlice = (local: number, other: number): EndpointSlice => {
      const sl = slice('lb-1', 'lb', [...Array.from({ length: local }, (_, i) => `10.244.1.${20 + i}`), ...Array.from({ length: other }, (_, i) => `10.244.2.${20 + i}`)]);
      return { ...sl, endpoints: sl.endpoints.map((ep, i) => ({ ...ep, nodeName: i < local ? 'n1' : 'n2' })) };
    };
    const e = await setup({ services: [svc('a'), lb], slices: [slice('a-1', 'a', ['10.244.1.5', '10.244.1.6']), lbSlice(1, 2)] }, 60_000, 3_600_000, { health });
    const gauge = async () => Number(/^podnet_proxy_endpoints\{family="IPv4"\} (\d+)/m.exec(await e.registry.metrics())?.[1]);
    const lastHealth = () => [...(updates.at(-1) ?? new Map<number, HealthCheckService>())].map(([port, h]) => `${port} ${h.namespace}/${h.name} ${h.localEndpoints}`);
    await until(() => e.mode.calls.length >= 1, 'first sync');
    expect(await gauge()).toBe(5);
    expect(lastHealth()).toEqual(['30999 default/lb 1']);
    e.s.put(RESOURCES.endpointslices, slice('a-1', 'a', ['10.244.1.5', '10.244.1.6', '10.244.1.7']));
    await until(() => e.mode.calls.length >= 2, 'a partial sync');
    expect(e.mode.calls[1]!.changed).toEqual(['default/a:http']);
    expect(await gauge()).toBe(6);
    // A failed partial sync puts the model back; the full retry counts from it.
    e.mode.failNext = true;
    e.s.put(RESOURCES.endpointslices, lbSlice(2, 0));
    await until(() => e.mode.calls.length >= 3, 'the full retry');
    expect(e.mode.calls[2]!.changed).toBeUndefined();
    expect(await gauge()).toBe(5);
    expect(lastHealth()).toEqual(['30999 default/lb 2']);
    e.s.remove(RESOURCES.services, 'default', 'lb');
    await until(() => e.mode.calls.length >= 4, 'the sync after the delete');
    expect(await gauge()).toBe(3);
    expect(lastHealth()).toEqual([]);
  });

  it('syncs fully once both initial lists arrived, then partially with only the changed ports', async () => {
    const e = await setup({ services: [svc('a'), svc('b', { clusterIP: '10.96.0.11', clusterIPs: ['10.96.0.11'] })], slices: [slice('a-1', 'a', ['10.244.1.5'])] });
    await until(() => e.mode.calls.length >= 1, 'first sync');
    expect(e.mode.calls[0]!.changed).toBeUndefined();
    expect([...e.mode.calls[0]!.ports[0]!]).toEqual([
      ['default/a:http', 1],
      ['default/b:http', 0],
    ]);
    expect(e.proxier.ready).toBe(true);
    e.s.put(RESOURCES.endpointslices, slice('b-1', 'b', ['10.244.2.5', '10.244.3.5']));
    await until(() => e.mode.calls.length >= 2, 'second sync');
    expect(e.mode.calls[1]!.changed).toEqual(['default/b:http']);
    expect(e.mode.calls[1]!.ports[0]!.get('default/b:http')).toBe(2);
  });

  it('a change that does not alter what is programmed syncs nothing', async () => {
    const e = await setup({ services: [svc('a')], slices: [slice('a-1', 'a', ['10.244.1.5'])] });
    await until(() => e.mode.calls.length >= 1, 'first sync');
    // A label change on the Service: a new resourceVersion, the same rules.
    e.s.put(RESOURCES.services, { ...svc('a'), metadata: { ...svc('a').metadata, labels: { team: 'x' } } });
    await until(() => e.mode.calls.length >= 2, 'second sync');
    expect(e.mode.calls[1]!.changed).toEqual([]);
  });

  it('a deleted Service is reported as changed and leaves the snapshot', async () => {
    const e = await setup({ services: [svc('a'), svc('b', { clusterIP: '10.96.0.11', clusterIPs: ['10.96.0.11'] })] });
    await until(() => e.mode.calls.length >= 1, 'first sync');
    e.s.remove(RESOURCES.services, 'default', 'a');
    await until(() => e.mode.calls.length >= 2, 'second sync');
    expect(e.mode.calls[1]!.changed).toEqual(['default/a:http']);
    expect([...e.mode.calls[1]!.ports[0]!.keys()]).toEqual(['default/b:http']);
  });

  it('after a failed sync the next one is full and nothing is lost', async () => {
    const e = await setup({ services: [svc('a')] });
    await until(() => e.mode.calls.length >= 1, 'first sync');
    e.mode.failNext = true;
    e.s.put(RESOURCES.endpointslices, slice('a-1', 'a', ['10.244.1.5']));
    await until(() => e.mode.calls.length >= 2, 'the retry');
    expect(e.mode.calls[1]!.changed).toBeUndefined();
    expect(e.mode.calls[1]!.ports[0]!.get('default/a:http')).toBe(1);
    const text = await e.registry.metrics();
    expect(text).toMatch(/podnet_proxy_sync_failures_total\{mode="nftables"\} 1/);
    expect(text).toMatch(/podnet_proxy_sync_duration_seconds_count\{mode="nftables",kind="full"\} 2/);
  });

  it('UDP: a removed endpoint and a Service that gets its first endpoint have their conntrack entries deleted', async () => {
    const udp = svc('dns', { ports: [{ name: 'http', port: 53, protocol: 'UDP' }] });
    const e = await setup({ services: [udp], slices: [slice('dns-1', 'dns', ['10.244.1.5', '10.244.1.6'], {}, 'UDP')] });
    await until(() => e.mode.calls.length >= 1, 'first sync');
    e.s.put(RESOURCES.endpointslices, slice('dns-1', 'dns', ['10.244.1.6'], {}, 'UDP'));
    await until(() => e.conntrack.length >= 1, 'conntrack cleanup');
    expect(e.conntrack).toEqual([{ protocol: 'udp', replySrc: '10.244.1.5', replyPortSrc: 8080 }]);
    e.s.put(RESOURCES.endpointslices, slice('dns-1', 'dns', [], {}, 'UDP'));
    await until(() => e.mode.calls.length >= 3, 'third sync');
    e.conntrack.length = 0;
    e.s.put(RESOURCES.endpointslices, slice('dns-1', 'dns', ['10.244.1.7'], {}, 'UDP'));
    await until(() => e.conntrack.length >= 1, 'conntrack cleanup of the VIP');
    expect(e.conntrack).toEqual([{ protocol: 'udp', origDst: '10.96.0.10', origPortDst: 53 }]);
  });

  it('observes network programming latency from the slice trigger time, once per change, not at start', async () => {
    const old = new Date(Date.now() - 5000).toISOString();
    const e = await setup({ services: [svc('a')], slices: [slice('a-1', 'a', ['10.244.1.5'], { annotations: { [TRIGGER_TIME_ANNOTATION]: old } })] });
    await until(() => e.mode.calls.length >= 1, 'first sync');
    const count = async () => Number(/podnet_network_programming_duration_seconds_count\{mode="nftables"\} (\d+)/.exec(await e.registry.metrics())?.[1] ?? 0);
    expect(await count()).toBe(0);
    const t = new Date(Date.now() - 200).toISOString();
    e.s.put(RESOURCES.endpointslices, slice('a-1', 'a', ['10.244.1.6'], { annotations: { [TRIGGER_TIME_ANNOTATION]: t } }));
    await until(() => e.mode.calls.length >= 2, 'second sync');
    expect(await count()).toBe(1);
    const sum = Number(/podnet_network_programming_duration_seconds_sum\{mode="nftables"\} ([\d.]+)/.exec(await e.registry.metrics())?.[1]);
    expect(sum).toBeGreaterThanOrEqual(0.2);
    expect(sum).toBeLessThan(5);
  });

  it('periodic syncs write nothing; a full sync comes every fullSyncMs', async () => {
    const e = await setup({ services: [svc('a')] }, 100, 350);
    await until(() => e.mode.calls.length >= 3, 'periodic syncs');
    expect(e.mode.calls[0]!.changed).toBeUndefined();
    expect(e.mode.calls[1]!.changed).toEqual([]);
    await until(() => e.mode.calls.filter((c) => c.changed === undefined).length >= 2, 'the second full sync');
    const kinds = e.mode.calls.map((c) => (c.changed ? 'p' : 'F')).join('');
    expect(kinds).toMatch(/^Fp+F/);
  });
});
