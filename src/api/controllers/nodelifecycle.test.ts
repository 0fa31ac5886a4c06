/**
 * Node lifecycle over a real Registry, with an injected clock and a 20 ms period: a Node
 * whose Lease is older than the grace period becomes Ready=Unknown, its pods Ready=False
 * and so their endpoints not ready (the EndpointSlice controller runs too); a renewed
 * Lease brings all of it back. The controller only undoes what it did itself.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { testClock, testRegistry } from './testing.js';
import { eventually } from '../../testing/eventually.js';
import type { Condition, EndpointSlice, Lease, Node, Pod } from '../../client/types.js';
import { silentLogger } from '../../util/log.js';
import { now, nowMicro } from '../registry/objects.js';
import { Registry } from '../registry/registry.js';
import { EndpointSliceController, SERVICE_NAME_LABEL } from './endpointslices.js';
import { NODE_LEASE_NAMESPACE, NodeLifecycleController, REASON_NODE_UNKNOWN, REASON_POD_NODE_LOST } from './nodelifecycle.js';

const MERGE = 'application/merge-patch+json';
const GRACE_MS = 40_000;
const PERIOD_MS = 20;

// ---------------------------------------------------------------- harness

interface Cluster {
  registry: Registry;
  clock: { now: number; advance(ms: number): void };
}

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(opts: { endpointSlices?: boolean } = {}): Promise<Cluster> {
  const clock = testClock();
  const registry = await testRegistry(cleanups, { label: 'nlc', clock });
  const tick = () => clock.now;
  if (opts.endpointSlices !== false) {
    const eps = new EndpointSliceController(registry, silentLogger());
    await eps.start();
    cleanups.push(() => eps.stop());
  }
  const nlc = new NodeLifecycleController(registry, silentLogger(), { gracePeriodMs: GRACE_MS, periodMs: PERIOD_MS, clock: tick });
  await nlc.start();
  cleanups.push(() => nlc.stop());
  return { registry, clock };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A node as its agent registers it: Ready=True posted by the agent, and (optionally) a Lease. */
async function addNode(c: Cluster, name: string, o: { ready?: Condition; lease?: boolean; extra?: Condition[] } = {}): Promise<void> {
  const n = (await c.registry.create<Node>('nodes', undefined, { metadata: { name } })).object;
  const ts = now(() => c.clock.now);
  const readyCond: Condition = o.ready ?? { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'agent is posting ready status' };
  await c.registry.update('nodes', undefined, name, { ...n, status: { conditions: [...(o.extra ?? []), { lastHeartbeatTime: ts, lastTransitionTime: ts, ...readyCond }] } }, { subresource: 'status' });
  if (o.lease !== false) await c.registry.create('leases', NODE_LEASE_NAMESPACE, { metadata: { name }, spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: nowMicro(() => c.clock.now) } });
}

/** Renews a node's Lease as of `at` (default: the clock's now). */
async function renew(c: Cluster, name: string, at = c.clock.now): Promise<void> {
  await c.registry.patch('leases', NODE_LEASE_NAMESPACE, name, { spec: { renewTime: nowMicro(() => at) } }, MERGE);
}

async function addPod(c: Cluster, name: string, nodeName: string, ip: string, o: { ready?: Condition; labels?: Record<string, string> } = {}): Promise<void> {
  await c.registry.create('pods', 'default', { metadata: { name, labels: o.labels ?? { app: 'web' } }, spec: { nodeName, containers: [{ name: 'c', image: 'pause' }] } });
  const ts = now(() => c.clock.now);
  const readyCond: Condition = o.ready ?? { type: 'Ready', status: 'True' };
  await c.registry.patch(
    'pods',
    'default',
    name,
    { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'PodScheduled', status: 'True', lastTransitionTime: ts }, { lastTransitionTime: ts, ...readyCond }] } },
    MERGE,
    { subresource: 'status' },
  );
}

async function nodeReady(c: Cluster, name: string): Promise<Condition | undefined> {
  return (await c.registry.get<Node>('nodes', undefined, name)).status?.conditions?.find((x) => x.type === 'Ready');
}

async function podReady(c: Cluster, name: string): Promise<Condition | undefined> {
  return (await c.registry.get<Pod>('pods', 'default', name)).status?.conditions?.find((x) => x.type === 'Ready');
}

/** ready flag of every endpoint of Service `svc`, by address. */
async function endpointReadiness(c: Cluster, svc: string): Promise<Record<string, boolean | undefined>> {
  const slices = (await c.registry.list<EndpointSlice>('endpointslices', { namespace: 'default', labelSelector: `${SERVICE_NAME_LABEL}=${svc}` })).items;
  const out: Record<string, boolean | undefined> = {};
  for (const e of slices.flatMap((s) => s.endpoints)) out[e.addresses[0]!] = e.conditions?.ready;
  return out;
}

// ---------------------------------------------------------------- tests

describe('NodeLifecycleController', () => {
  it('a node whose Lease expires goes Ready=Unknown, its pods and endpoints not ready; a renewed Lease brings them back', async () => {
    const c = await start();
    await addNode(c, 'node-a');
    await addNode(c, 'node-b');
    await addPod(c, 'a1', 'node-a', '10.244.1.1');
    await addPod(c, 'a2', 'node-a', '10.244.1.2');
    await addPod(c, 'b1', 'node-b', '10.244.2.1');
    await c.registry.create('services', 'default', { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }] } });
    await eventually(async () => expect(await endpointReadiness(c, 'web')).toEqual({ '10.244.1.1': true, '10.244.1.2': true, '10.244.2.1': true }));

    // Within the grace period nothing happens.
    c.clock.advance(GRACE_MS - 1000);
    await sleep(PERIOD_MS * 5);
    expect((await nodeReady(c, 'node-a'))?.status).toBe('True');

    // node-b keeps renewing (ahead of the clock jump); node-a stops.
    await renew(c, 'node-b', c.clock.now + 2000);
    c.clock.advance(2000);
    const lost = await eventually(async () => {
      const r = await nodeReady(c, 'node-a');
      expect(r?.status).toBe('Unknown');
      return r!;
    });
    expect(lost.reason).toBe(REASON_NODE_UNKNOWN);
    expect(lost.lastTransitionTime).toBe(now(() => c.clock.now));
    await eventually(async () => {
      for (const p of ['a1', 'a2']) {
        const r = await podReady(c, p);
        expect(r?.status, p).toBe('False');
        expect(r?.reason).toBe(REASON_POD_NODE_LOST);
      }
    });
    await eventually(async () => expect(await endpointReadiness(c, 'web')).toEqual({ '10.244.1.1': false, '10.244.1.2': false, '10.244.2.1': true }));
    // The other node and its pod are untouched; other pod conditions are kept.
    expect(await nodeReady(c, 'node-b')).toMatchObject({ status: 'True', reason: 'KubeletReady' });
    expect(await podReady(c, 'b1')).toMatchObject({ status: 'True' });
    const a1 = await c.registry.get<Pod>('pods', 'default', 'a1');
    expect(a1.status?.conditions?.find((x) => x.type === 'PodScheduled')?.status).toBe('True');

    // node-a renews its Lease: Ready=True, pods ready, endpoints ready.
    c.clock.advance(5000);
    await renew(c, 'node-a');
    await renew(c, 'node-b');
    await eventually(async () => expect((await nodeReady(c, 'node-a'))?.status).toBe('True'));
    await eventually(async () => {
      for (const p of ['a1', 'a2']) expect((await podReady(c, p))?.status, p).toBe('True');
    });
    await eventually(async () => expect(await endpointReadiness(c, 'web')).toEqual({ '10.244.1.1': true, '10.244.1.2': true, '10.244.2.1': true }));

    // And again: a second outage is noticed too.
    await renew(c, 'node-b', c.clock.now + GRACE_MS + 1000);
    c.clock.advance(GRACE_MS + 1000);
    await eventually(async () => expect(await endpointReadiness(c, 'web')).toEqual({ '10.244.1.1': false, '10.244.1.2': false, '10.244.2.1': true }));
    expect((await nodeReady(c, 'node-a'))?.reason).toBe(REASON_NODE_UNKNOWN);
  });

  it('a node with no Lease counts from its creation', async () => {
    const c = await start({ endpointSlices: false });
    await addNode(c, 'fresh', { lease: false });
    await sleep(PERIOD_MS * 5);
    expect((await nodeReady(c, 'fresh'))?.status).toBe('True');
    c.clock.advance(GRACE_MS + 1000);
    await eventually(async () => expect(await nodeReady(c, 'fresh')).toMatchObject({ status: 'Unknown', reason: REASON_NODE_UNKNOWN }));
  });

  it('only undoes its own changes', async () => {
    const c = await start({ endpointSlices: false });
    const pressure: Condition = { type: 'MemoryPressure', status: 'False', reason: 'KubeletHasSufficientMemory' };
    await addNode(c, 'node-a', { extra: [pressure] });
    // Not ready by the agent's own report, with a fresh lease: not the controller's business.
    await addNode(c, 'agent-notready', { ready: { type: 'Ready', status: 'False', reason: 'KubeletNotReady', message: 'network plugin not ready' } });
    // Unknown for a reason the controller did not write, with a fresh lease: left alone too.
    await addNode(c, 'other-unknown', { ready: { type: 'Ready', status: 'Unknown', reason: 'SomeoneElse' } });
    await addPod(c, 'ok', 'node-a', '10.244.1.1');
    await addPod(c, 'probe-failing', 'node-a', '10.244.1.2', { ready: { type: 'Ready', status: 'False', reason: 'ContainersNotReady', message: 'readiness probe failed' } });
    await addPod(c, 'elsewhere', 'agent-notready', '10.244.3.1', { ready: { type: 'Ready', status: 'False', reason: 'ContainersNotReady' } });

    // node-a's lease expires (the others keep renewing).
    await renew(c, 'agent-notready', c.clock.now + GRACE_MS + 1000);
    await renew(c, 'other-unknown', c.clock.now + GRACE_MS + 1000);
    c.clock.advance(GRACE_MS + 1000);
    await eventually(async () => expect(await podReady(c, 'ok')).toMatchObject({ status: 'False', reason: REASON_POD_NODE_LOST }));
    const node = await c.registry.get<Node>('nodes', undefined, 'node-a');
    expect(node.status?.conditions?.find((x) => x.type === 'MemoryPressure')).toMatchObject(pressure);
    // A pod that was already not ready keeps its own reason.
    expect(await podReady(c, 'probe-failing')).toMatchObject({ status: 'False', reason: 'ContainersNotReady' });

    // Renewed: node-a and "ok" come back; what the controller did not write stays as it was.
    await renew(c, 'node-a');
    await eventually(async () => expect((await podReady(c, 'ok'))?.status).toBe('True'));
    expect((await nodeReady(c, 'node-a'))?.status).toBe('True');
    await sleep(PERIOD_MS * 5);
    expect(await podReady(c, 'probe-failing')).toMatchObject({ status: 'False', reason: 'ContainersNotReady' });
    expect(await nodeReady(c, 'agent-notready')).toMatchObject({ status: 'False', reason: 'KubeletNotReady' });
    expect(await nodeReady(c, 'other-unknown')).toMatchObject({ status: 'Unknown', reason: 'SomeoneElse' });
    expect(await podReady(c, 'elsewhere')).toMatchObject({ status: 'False', reason: 'ContainersNotReady' });
    expect((await c.registry.get<Node>('nodes', undefined, 'node-a')).status?.conditions?.find((x) => x.type === 'MemoryPressure')).toMatchObject(pressure);
  });

  it('a pod that turns up ready on a lost node is marked not ready too', async () => {
    const c = await start();
    await addNode(c, 'node-a');
    await addPod(c, 'a1', 'node-a', '10.244.1.1');
    await c.registry.create('services', 'default', { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }] } });
    c.clock.advance(GRACE_MS + 1000);
    await eventually(async () => expect(await podReady(c, 'a1')).toMatchObject({ status: 'False', reason: REASON_POD_NODE_LOST }));
    // A late status write (or a new pod bound to the lost node) says Ready=True.
    await addPod(c, 'a2', 'node-a', '10.244.1.2');
    await eventually(async () => expect(await podReady(c, 'a2')).toMatchObject({ status: 'False', reason: REASON_POD_NODE_LOST }));
    await eventually(async () => expect(await endpointReadiness(c, 'web')).toEqual({ '10.244.1.1': false, '10.244.1.2': false }));
    // Both come back with the lease.
    await renew(c, 'node-a');
    await eventually(async () => expect(await endpointReadiness(c, 'web')).toEqual({ '10.244.1.1': true, '10.244.1.2': true }));
  });

  it('pods it marked come back even when the node was made Ready by someone else first', async () => {
    const c = await start({ endpointSlices: false });
    await addNode(c, 'node-a');
    await addPod(c, 'a1', 'node-a', '10.244.1.1');
    c.clock.advance(GRACE_MS + 1000);
    await eventually(async () => expect(await podReady(c, 'a1')).toMatchObject({ status: 'False', reason: REASON_POD_NODE_LOST }));
    // The agent comes back and posts Ready=True itself before the controller saw the lease.
    const ts = now(() => c.clock.now);
    await c.registry.patch('nodes', undefined, 'node-a', { status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', lastHeartbeatTime: ts, lastTransitionTime: ts }] } }, MERGE, { subresource: 'status' });
    await renew(c, 'node-a');
    await eventually(async () => expect((await podReady(c, 'a1'))?.status).toBe('True'));
  });

  it('ignores leases in other namespaces', async () => {
    const c = await start({ endpointSlices: false });
    await addNode(c, 'node-a', { lease: false });
    const elsewhere: Lease = { metadata: { name: 'node-a' }, spec: { holderIdentity: 'node-a', renewTime: nowMicro(() => c.clock.now + GRACE_MS * 10) } };
    await c.registry.create('leases', 'default', elsewhere);
    c.clock.advance(GRACE_MS + 1000);
    await eventually(async () => expect((await nodeReady(c, 'node-a'))?.status).toBe('Unknown'));
  });
});
