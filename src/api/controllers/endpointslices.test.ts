/**
 * The EndpointSlice controller over a real Registry (SqliteStore in a temp directory):
 * which pods become endpoints, their conditions, nodes and ports, slicing (100 per slice,
 * one address family per slice), and that slices follow Services and Pods as they change.
 * The controller is asynchronous: assertions poll with eventually.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { testRegistry } from './testing.js';
import { eventually } from '../../testing/eventually.js';
import type { Condition, ContainerPort, EndpointSlice, Pod, Service, ServiceSpec } from '../../client/types.js';
import { Cidr } from '../../util/ipnet.js';
import { silentLogger } from '../../util/log.js';
import { ClusterIPAllocator, PortAllocator } from '../registry/allocators.js';
import { Registry } from '../registry/registry.js';
import { WatchCache } from '../registry/watchcache.js';
import { SqliteStore } from '../store/sqlite.js';
import { EndpointSliceController, MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL } from './endpointslices.js';

const MERGE = 'application/merge-patch+json';

// ---------------------------------------------------------------- harness

interface Api {
  registry: Registry;
  controller: EndpointSliceController;
}

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(opts: { dualStack?: boolean } = {}): Promise<Api> {
  const registry = await testRegistry(cleanups, { label: 'eps', dualStack: !!opts.dualStack });
  const controller = new EndpointSliceController(registry, silentLogger());
  await controller.start();
  cleanups.push(async () => controller.stop());
  return { registry, controller };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function slicesOf(api: Api, svc: string, ns = 'default'): Promise<EndpointSlice[]> {
  const l = await api.registry.list<EndpointSlice>('endpointslices', { namespace: ns, labelSelector: `${SERVICE_NAME_LABEL}=${svc}` });
  return l.items;
}

const ready = (status: Condition['status'] = 'True'): Condition => ({ type: 'Ready', status });

interface PodOpts {
  labels?: Record<string, string>;
  nodeName?: string;
  ips?: string[];
  ready?: boolean;
  ports?: ContainerPort[];
  phase?: NonNullable<Pod['status']>['phase'];
  hostname?: string;
  subdomain?: string;
  namespace?: string;
}

/** Creates a pod, then gives it the status an agent would report. */
async function createPod(api: Api, name: string, o: PodOpts = {}): Promise<Pod> {
  const ns = o.namespace ?? 'default';
  const created = (
    await api.registry.create<Pod>('pods', ns, {
      metadata: { name, labels: o.labels ?? { app: 'web' } },
      spec: {
        containers: [{ name: 'c', image: 'pause', ...(o.ports ? { ports: o.ports } : {}) }],
        ...(o.nodeName !== undefined ? { nodeName: o.nodeName } : { nodeName: 'node-a' }),
        ...(o.hostname ? { hostname: o.hostname } : {}),
        ...(o.subdomain ? { subdomain: o.subdomain } : {}),
      },
    })
  ).object;
  const ips = o.ips ?? [];
  if (!ips.length && o.phase === undefined && o.ready === undefined) return created;
  return setStatus(api, created, { ips, ready: o.ready ?? true, ...(o.phase ? { phase: o.phase } : {}) });
}

async function setStatus(api: Api, pod: Pod, s: { ips: string[]; ready: boolean; phase?: NonNullable<Pod['status']>['phase'] }): Promise<Pod> {
  const status: Pod['status'] = {
    phase: s.phase ?? 'Running',
    conditions: [ready(s.ready ? 'True' : 'False')],
    ...(s.ips.length ? { podIP: s.ips[0], podIPs: s.ips.map((ip) => ({ ip })) } : {}),
  };
  return (await api.registry.patch<Pod>('pods', pod.metadata.namespace, pod.metadata.name!, { status }, MERGE, { subresource: 'status' })).object;
}

async function createService(api: Api, name: string, spec: ServiceSpec, ns = 'default'): Promise<Service> {
  return (await api.registry.create<Service>('services', ns, { metadata: { name }, spec })).object;
}

const web: ServiceSpec = { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] };

const addressesOf = (slices: EndpointSlice[]) => slices.flatMap((s) => s.endpoints.flatMap((e) => e.addresses)).sort();

// ---------------------------------------------------------------- tests

describe('EndpointSliceController', () => {
  it('lists the matching pods that have an IP, with node, target and ports, in a managed slice', async () => {
    const api = await start();
    const svc = await createService(api, 'web', web);
    const p0 = await createPod(api, 'web-0', { ips: ['10.244.1.10'], nodeName: 'node-a' });
    await createPod(api, 'web-1'); // no IP yet
    await createPod(api, 'other-0', { labels: { app: 'other' }, ips: ['10.244.1.11'] });
    await createPod(api, 'web-9', { namespace: 'kube-system', ips: ['10.244.1.12'] }); // another namespace

    const [slice] = await eventually(async () => {
      const s = await slicesOf(api, 'web');
      expect(s).toHaveLength(1);
      expect(addressesOf(s)).toEqual(['10.244.1.10']);
      return s;
    });
    expect(slice!.metadata.labels).toMatchObject({ [SERVICE_NAME_LABEL]: 'web', [MANAGED_BY_LABEL]: MANAGED_BY });
    expect(slice!.metadata.name).toMatch(/^web-/);
    expect(slice!.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'Service', name: 'web', uid: svc.metadata.uid, controller: true })]);
    expect(slice!.addressType).toBe('IPv4');
    expect(slice!.ports).toEqual([{ name: 'http', protocol: 'TCP', port: 8080 }]);
    expect(slice!.endpoints).toEqual([
      {
        addresses: ['10.244.1.10'],
        conditions: { ready: true, serving: true, terminating: false },
        nodeName: 'node-a',
        targetRef: { kind: 'Pod', namespace: 'default', name: 'web-0', uid: p0.metadata.uid },
      },
    ]);

    // web-1 gets its IP: it joins the same slice.
    const p1 = await api.registry.get<Pod>('pods', 'default', 'web-1');
    await setStatus(api, p1, { ips: ['10.244.2.20'], ready: true });
    await eventually(async () => {
      const s = await slicesOf(api, 'web');
      expect(s).toHaveLength(1);
      expect(addressesOf(s)).toEqual(['10.244.1.10', '10.244.2.20']);
    });
    expect(await slicesOf(api, 'web', 'kube-system')).toEqual([]);
  });

  it('conditions: not ready, terminating (serving keeps the readiness), terminal pods dropped', async () => {
    const api = await start();
    await createService(api, 'web', web);
    await createPod(api, 'ready', { ips: ['10.244.0.1'], ready: true });
    await createPod(api, 'notready', { ips: ['10.244.0.2'], ready: false });
    await createPod(api, 'term-ready', { ips: ['10.244.0.3'], ready: true });
    await createPod(api, 'term-notready', { ips: ['10.244.0.4'], ready: false });
    await createPod(api, 'done', { ips: ['10.244.0.5'], ready: false, phase: 'Succeeded' });
    await createPod(api, 'failed', { ips: ['10.244.0.6'], ready: false, phase: 'Failed' });
    // Bound pods are deleted gracefully: they stay, with a deletionTimestamp.
    await api.registry.delete('pods', 'default', 'term-ready');
    await api.registry.delete('pods', 'default', 'term-notready');
    expect((await api.registry.get<Pod>('pods', 'default', 'term-ready')).metadata.deletionTimestamp).toBeTruthy();

    const byIP = await eventually(async () => {
      const s = await slicesOf(api, 'web');
      const eps = new Map(s.flatMap((x) => x.endpoints).map((e) => [e.addresses[0], e.conditions]));
      expect(eps.get('10.244.0.3')?.terminating).toBe(true);
      expect(eps.get('10.244.0.4')?.terminating).toBe(true);
      return eps;
    });
    expect([...byIP.keys()].sort()).toEqual(['10.244.0.1', '10.244.0.2', '10.244.0.3', '10.244.0.4']);
    expect(byIP.get('10.244.0.1')).toEqual({ ready: true, serving: true, terminating: false });
    expect(byIP.get('10.244.0.2')).toEqual({ ready: false, serving: false, terminating: false });
    expect(byIP.get('10.244.0.3')).toEqual({ ready: false, serving: true, terminating: true });
    expect(byIP.get('10.244.0.4')).toEqual({ ready: false, serving: false, terminating: true });

    // Readiness changes are followed.
    await setStatus(api, await api.registry.get<Pod>('pods', 'default', 'notready'), { ips: ['10.244.0.2'], ready: true });
    await setStatus(api, await api.registry.get<Pod>('pods', 'default', 'ready'), { ips: ['10.244.0.1'], ready: false });
    await eventually(async () => {
      const eps = new Map((await slicesOf(api, 'web')).flatMap((x) => x.endpoints).map((e) => [e.addresses[0], e.conditions]));
      expect(eps.get('10.244.0.2')).toEqual({ ready: true, serving: true, terminating: false });
      expect(eps.get('10.244.0.1')).toEqual({ ready: false, serving: false, terminating: false });
    });
    // The terminating pod goes away when its deletion finishes.
    await api.registry.delete('pods', 'default', 'term-ready', { gracePeriodSeconds: 0 });
    await eventually(async () => expect(addressesOf(await slicesOf(api, 'web'))).toEqual(['10.244.0.1', '10.244.0.2', '10.244.0.4']));
  });

  it('publishNotReadyAddresses: ready for every pod (terminating too), serving is still the pod readiness', async () => {
    const api = await start();
    await createService(api, 'web', { ...web, publishNotReadyAddresses: true });
    await createPod(api, 'notready', { ips: ['10.244.0.2'], ready: false });
    await createPod(api, 'term', { ips: ['10.244.0.3'], ready: true });
    await api.registry.delete('pods', 'default', 'term');
    const eps = await eventually(async () => {
      const m = new Map((await slicesOf(api, 'web')).flatMap((x) => x.endpoints).map((e) => [e.addresses[0], e.conditions]));
      expect(m.get('10.244.0.3')?.terminating).toBe(true);
      expect(m.size).toBe(2);
      return m;
    });
    // As kube's endpointslice controller: ready = publishNotReadyAddresses || (serving && !terminating).
    expect(eps.get('10.244.0.2')).toEqual({ ready: true, serving: false, terminating: false });
    expect(eps.get('10.244.0.3')).toEqual({ ready: true, serving: true, terminating: true });
  });

  it('sets hostname only for pods whose subdomain is the Service name', async () => {
    const api = await start();
    await createService(api, 'web', { ...web, clusterIP: 'None' });
    await createPod(api, 'a', { ips: ['10.244.0.1'], hostname: 'a', subdomain: 'web' });
    await createPod(api, 'b', { ips: ['10.244.0.2'], hostname: 'b', subdomain: 'other' });
    await createPod(api, 'c', { ips: ['10.244.0.3'], hostname: 'c' });
    const eps = await eventually(async () => {
      const list = (await slicesOf(api, 'web')).flatMap((s) => s.endpoints);
      expect(list).toHaveLength(3);
      return new Map(list.map((e) => [e.addresses[0], e]));
    });
    expect(eps.get('10.244.0.1')!.hostname).toBe('a');
    expect(eps.get('10.244.0.2')!.hostname).toBeUndefined();
    expect(eps.get('10.244.0.3')!.hostname).toBeUndefined();
  });

  it('resolves ports from a numeric targetPort, a named container port per pod, and defaults to the port', async () => {
    const api = await start();
    await createService(api, 'web', {
      selector: { app: 'web' },
      ports: [
        { name: 'http', port: 80, targetPort: 8080 },
        { name: 'metrics', port: 9090, targetPort: 'metrics' },
        { name: 'dns', port: 53, protocol: 'UDP' },
      ],
    });
    await createPod(api, 'a', { ips: ['10.244.0.1'], ports: [{ name: 'metrics', containerPort: 9100 }] });
    await createPod(api, 'b', { ips: ['10.244.0.2'], ports: [{ name: 'metrics', containerPort: 9100 }] });
    await createPod(api, 'c', { ips: ['10.244.0.3'], ports: [{ name: 'metrics', containerPort: 9200 }] });
    await createPod(api, 'd', { ips: ['10.244.0.4'], ports: [{ name: 'metrics', containerPort: 9100, protocol: 'UDP' }] }); // wrong protocol
    const slices = await eventually(async () => {
      const s = await slicesOf(api, 'web');
      expect(addressesOf(s)).toEqual(['10.244.0.1', '10.244.0.2', '10.244.0.3', '10.244.0.4']);
      expect(s).toHaveLength(3);
      return s;
    });
    const byPorts = new Map(slices.map((s) => [JSON.stringify(s.ports), s.endpoints.map((e) => e.addresses[0]).sort()]));
    const http = { name: 'http', protocol: 'TCP', port: 8080 };
    const dns = { name: 'dns', protocol: 'UDP', port: 53 };
    expect(byPorts.get(JSON.stringify([http, { name: 'metrics', protocol: 'TCP', port: 9100 }, dns]))).toEqual(['10.244.0.1', '10.244.0.2']);
    expect(byPorts.get(JSON.stringify([http, { name: 'metrics', protocol: 'TCP', port: 9200 }, dns]))).toEqual(['10.244.0.3']);
    // A pod that does not expose the named port is listed without that port.
    expect(byPorts.get(JSON.stringify([http, dns]))).toEqual(['10.244.0.4']);
  });

  it('puts at most 100 endpoints in a slice: 250 pods make 3 slices, every pod exactly once', async () => {
    const api = await start();
    await createService(api, 'web', web);
    const ips: string[] = [];
    for (let batch = 0; batch < 5; batch++) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) => {
          const i = batch * 50 + j;
          const ip = `10.244.${Math.floor(i / 200)}.${(i % 200) + 1}`;
          ips.push(ip);
          return createPod(api, `web-${String(i).padStart(3, '0')}`, { ips: [ip], nodeName: `node-${i % 3}` });
        }),
      );
    }
    const check = async () => {
      const s = await slicesOf(api, 'web');
      expect(s).toHaveLength(3);
      for (const x of s) {
        expect(x.endpoints.length).toBeLessThanOrEqual(100);
        expect(x.addressType).toBe('IPv4');
      }
      expect(s.map((x) => x.endpoints.length).sort((a, b) => a - b)).toEqual([50, 100, 100]);
      const all = addressesOf(s);
      expect(all).toEqual([...ips].sort());
      expect(new Set(all).size).toBe(250);
      return s;
    };
    await eventually(check, 10_000);
    // Stable: nothing left to do, and still exactly right.
    await api.controller.idle();
    await sleep(100);
    await api.controller.idle();
    await check();

    // Removing pods shrinks the set without duplicating or losing any.
    await Promise.all(Array.from({ length: 60 }, (_, i) => api.registry.delete('pods', 'default', `web-${String(i).padStart(3, '0')}`, { gracePeriodSeconds: 0 })));
    await eventually(async () => {
      const s = await slicesOf(api, 'web');
      expect(s).toHaveLength(2);
      expect(s.every((x) => x.endpoints.length <= 100)).toBe(true);
      expect(addressesOf(s)).toEqual(ips.slice(60).sort());
    }, 10_000);
  }, 15_000);

  it('one address family per slice: a dual-stack Service gets an IPv4 and an IPv6 slice', async () => {
    const api = await start({ dualStack: true });
    await createService(api, 'dual', { ...web, ipFamilyPolicy: 'RequireDualStack' });
    await createService(api, 'v4only', { ...web, ipFamilyPolicy: 'SingleStack' });
    await createService(api, 'v6only', { ...web, ipFamilies: ['IPv6'] });
    await createPod(api, 'a', { ips: ['10.244.0.1', 'fd00:10:244::1'] });
    await createPod(api, 'b', { ips: ['10.244.0.2', 'fd00:10:244::2'] });
    await createPod(api, 'c', { ips: ['10.244.0.3'] }); // IPv4 only
    const dual = await eventually(async () => {
      const s = await slicesOf(api, 'dual');
      expect(s.map((x) => x.addressType).sort()).toEqual(['IPv4', 'IPv6']);
      expect(addressesOf(s)).toEqual(['10.244.0.1', '10.244.0.2', '10.244.0.3', 'fd00:10:244::1', 'fd00:10:244::2']);
      return s;
    });
    const v4 = dual.find((s) => s.addressType === 'IPv4')!;
    const v6 = dual.find((s) => s.addressType === 'IPv6')!;
    expect(v4.endpoints.map((e) => e.addresses[0])).toEqual(['10.244.0.1', '10.244.0.2', '10.244.0.3']);
    expect(v6.endpoints.map((e) => e.addresses[0])).toEqual(['fd00:10:244::1', 'fd00:10:244::2']);
    expect(v6.endpoints.map((e) => e.targetRef?.name)).toEqual(['a', 'b']);
    await eventually(async () => {
      const s = await slicesOf(api, 'v4only');
      expect(s.map((x) => x.addressType)).toEqual(['IPv4']);
      expect(addressesOf(s)).toEqual(['10.244.0.1', '10.244.0.2', '10.244.0.3']);
    });
    await eventually(async () => {
      const s = await slicesOf(api, 'v6only');
      expect(s.map((x) => x.addressType)).toEqual(['IPv6']);
      expect(addressesOf(s)).toEqual(['fd00:10:244::1', 'fd00:10:244::2']);
    });
  });

  it('a Service without a selector gets no managed slices, and a hand-made slice is left alone', async () => {
    const api = await start();
    await createService(api, 'manual', { ports: [{ port: 80 }] });
    await createService(api, 'empty', { selector: {}, ports: [{ port: 80 }] });
    await createService(api, 'web', web);
    await createPod(api, 'a', { ips: ['10.244.0.1'] });
    await api.registry.create('endpointslices', 'default', { metadata: { name: 'manual-1', labels: { [SERVICE_NAME_LABEL]: 'manual' } }, addressType: 'IPv4', endpoints: [{ addresses: ['192.0.2.10'] }], ports: [{ port: 80 }] });
    // Wait until the controller demonstrably ran (web has its slice), then let it settle.
    await eventually(async () => expect(await slicesOf(api, 'web')).toHaveLength(1));
    await api.controller.idle();
    await sleep(100);
    await api.controller.idle();
    const manual = await slicesOf(api, 'manual');
    expect(manual.map((s) => s.metadata.name)).toEqual(['manual-1']);
    expect(manual[0]!.endpoints).toEqual([{ addresses: ['192.0.2.10'] }]);
    expect(await slicesOf(api, 'empty')).toEqual([]);
  });

  it('deleting the Service deletes its slices', async () => {
    const api = await start();
    await createService(api, 'web', web);
    await createService(api, 'keep', web);
    await createPod(api, 'a', { ips: ['10.244.0.1'] });
    await eventually(async () => expect(await slicesOf(api, 'web')).toHaveLength(1));
    await eventually(async () => expect(await slicesOf(api, 'keep')).toHaveLength(1));
    await api.registry.delete('services', 'default', 'web');
    await eventually(async () => expect(await slicesOf(api, 'web')).toEqual([]));
    expect(await slicesOf(api, 'keep')).toHaveLength(1);
  });

  it('a pod that loses its label, or is deleted, leaves the slice; a selector change is followed', async () => {
    const api = await start();
    await createService(api, 'web', web);
    await createPod(api, 'a', { ips: ['10.244.0.1'] });
    await createPod(api, 'b', { ips: ['10.244.0.2'] });
    await createPod(api, 'c', { ips: ['10.244.0.3'], nodeName: '' });
    await eventually(async () => expect(addressesOf(await slicesOf(api, 'web'))).toEqual(['10.244.0.1', '10.244.0.2', '10.244.0.3']));

    await api.registry.patch('pods', 'default', 'a', { metadata: { labels: { app: 'retired' } } }, MERGE);
    await eventually(async () => expect(addressesOf(await slicesOf(api, 'web'))).toEqual(['10.244.0.2', '10.244.0.3']));
    await api.registry.delete('pods', 'default', 'c'); // unbound: gone at once
    await eventually(async () => expect(addressesOf(await slicesOf(api, 'web'))).toEqual(['10.244.0.2']));
    // The label comes back.
    await api.registry.patch('pods', 'default', 'a', { metadata: { labels: { app: 'web' } } }, MERGE);
    await eventually(async () => expect(addressesOf(await slicesOf(api, 'web'))).toEqual(['10.244.0.1', '10.244.0.2']));
    // The Service now selects the retired label only.
    await api.registry.patch('pods', 'default', 'b', { metadata: { labels: { app: 'retired' } } }, MERGE);
    await api.registry.patch('services', 'default', 'web', { spec: { selector: { app: 'retired' } } }, MERGE);
    await eventually(async () => expect(addressesOf(await slicesOf(api, 'web'))).toEqual(['10.244.0.2']));
    // A selector removed: the managed slices go away.
    await api.registry.patch('services', 'default', 'web', { spec: { selector: null } }, MERGE);
    await eventually(async () => expect(await slicesOf(api, 'web')).toEqual([]));
  });

  it('repairs managed slices that are edited or deleted by hand', async () => {
    const api = await start();
    await createService(api, 'web', web);
    await createPod(api, 'a', { ips: ['10.244.0.1'] });
    const [slice] = await eventually(async () => {
      const s = await slicesOf(api, 'web');
      expect(addressesOf(s)).toEqual(['10.244.0.1']);
      return s;
    });
    await api.registry.update('endpointslices', 'default', slice!.metadata.name!, { ...slice!, endpoints: [{ addresses: ['192.0.2.99'] }] });
    await eventually(async () => expect(addressesOf(await slicesOf(api, 'web'))).toEqual(['10.244.0.1']));
    const [current] = await slicesOf(api, 'web');
    await api.registry.delete('endpointslices', 'default', current!.metadata.name!);
    await eventually(async () => {
      const s = await slicesOf(api, 'web');
      expect(s).toHaveLength(1);
      expect(s[0]!.metadata.name).not.toBe(current!.metadata.name);
      expect(addressesOf(s)).toEqual(['10.244.0.1']);
    });
  });

  it('slices of existing Services and Pods are made when the controller starts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'podnet-eps-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const store = SqliteStore.open(dir);
    const watchCache = new WatchCache(store);
    await watchCache.start();
    cleanups.push(async () => {
      watchCache.stop();
      await store.close();
    });
    const registry = new Registry({ store, watchCache, network: { clusterIPs: { 4: new ClusterIPAllocator(store, Cidr.parse('10.96.0.0/12')) }, primary: 4, nodePorts: new PortAllocator(store, { min: 30000, max: 32767 }) } });
    await registry.bootstrap();
    const api = { registry, controller: new EndpointSliceController(registry, silentLogger()) };
    await createService(api, 'web', web);
    await createPod(api, 'a', { ips: ['10.244.0.1'] });
    // A stale managed slice of a Service that no longer exists.
    await registry.create('endpointslices', 'default', { metadata: { name: 'gone-abcde', labels: { [SERVICE_NAME_LABEL]: 'gone', [MANAGED_BY_LABEL]: MANAGED_BY } }, addressType: 'IPv4', endpoints: [] });
    await api.controller.start();
    cleanups.push(async () => api.controller.stop());
    await eventually(async () => expect(addressesOf(await slicesOf(api, 'web'))).toEqual(['10.244.0.1']));
    await eventually(async () => expect(await slicesOf(api, 'gone')).toEqual([]));
  });
});
